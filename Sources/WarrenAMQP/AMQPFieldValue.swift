public import Foundation

/// An AMQP field table, as used for message headers and declare arguments.
public typealias AMQPTable = [String: AMQPFieldValue]

/// A value in an AMQP field table.
///
/// Integers of every width decode to `.int` and encode as signed 64-bit, floats decode to
/// `.double`: RabbitMQ rejects the unsigned field types of librabbitmq, and one integer case is
/// what a caller wants to match on.
public enum AMQPFieldValue: Sendable, Hashable {
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case bytes(Data)
    case timestamp(Date)
    case decimal(scale: UInt8, value: UInt32)
    case array([AMQPFieldValue])
    case table(AMQPTable)
    case void
}

extension AMQPFieldValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension AMQPFieldValue {
    /// The string inside, if this is a string; headers are mostly read this way.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The integer inside, if this is an integer.
    public var intValue: Int64? {
        if case .int(let value) = self { return value }
        return nil
    }
}
