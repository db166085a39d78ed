public import Foundation

/// An AMQP field table, as used for message headers and declare arguments.
public typealias AMQPTable = [String: AMQPFieldValue]

/// A value in an AMQP field table.
///
/// Integers of every width decode to `.int` and encode as signed 64-bit, floats decode to
/// `.double`: RabbitMQ rejects the unsigned field types of librabbitmq, and one integer case is
/// what a caller wants to match on. An unsigned 64-bit value above `Int64.max` decodes as
/// `Int64.max`. A timestamp is whole seconds on the wire: any `Date` encodes, clamped to 1970
/// and 2^64 - 1 s. Tables and arrays nested deeper than 32 levels decode as `.void` (noted in
/// `AMQPProperties.decodingLosses`, as every other change decoding makes). Doubles
/// must be finite to be sent (RabbitMQ refuses NaN and infinity).
///
/// Read numbers from other clients with `integer(clampedTo:)`: it accepts every type they
/// use for numbers and never traps.
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

extension AMQPFieldValue {
    /// The value as a whole number within `range`, for numeric headers any client may send
    /// (`x-deadline`, `x-attempts`): an integer of any width, a double (rounded; Java and Go
    /// clients send floats) or decimal digits in a string. Values beyond the range are clamped
    /// to it, ±infinity included; NaN, text that is not an integer and every other type are
    /// nil (absent). Never traps, whatever arrived.
    public func integer(clampedTo range: ClosedRange<Int64>) -> Int64? {
        switch self {
        case .int(let value):
            return min(max(value, range.lowerBound), range.upperBound)
        case .double(let value):
            guard !value.isNaN else { return nil }
            let rounded = value.rounded()
            // Compared as doubles first: only a value strictly inside the range is converted.
            if rounded <= Double(range.lowerBound) { return range.lowerBound }
            if rounded >= Double(range.upperBound) { return range.upperBound }
            return Int64(exactly: rounded).map { min(max($0, range.lowerBound), range.upperBound) }
        case .string(let text):
            if let value = Int64(text) { return min(max(value, range.lowerBound), range.upperBound) }
            // Digits too many for 64 bits are still a number: beyond either end of the range.
            let digits = text.utf8.drop { $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "+") }
            guard text.utf8.count - digits.count <= 1, !digits.isEmpty, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            return text.hasPrefix("-") ? range.lowerBound : range.upperBound
        default:
            return nil
        }
    }
}
