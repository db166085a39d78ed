public import Foundation
public import WarrenAMQP

/// Any JSON value, and the one conversion between AMQP field values (headers) and JSON: the
/// event store keeps headers as JSON and `warren replay` turns them back into AMQP values,
/// the CLI prints headers and bodies with `--json`. Integers stay integers (ids, cents, epoch ms).
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// JSON has no NaN or infinity (an AMQP double may be either): such a number is written as null.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): if value.isFinite { try container.encode(value) } else { try container.encodeNil() }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The value `data` holds, or nil when it is not JSON.
    public static func parse(_ data: Data) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: data)
    }

    /// The value as JSON text, keys sorted. Cannot fail: every case is plain JSON.
    public func jsonText(pretty: Bool) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(self)) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}

extension JSONValue {
    /// An AMQP field value as JSON: bytes as base64, timestamps as wire times
    /// (`WireTime.format`, UTC milliseconds), decimals as numbers, void as null.
    public init(_ field: AMQPFieldValue) {
        switch field {
        case .bool(let value): self = .bool(value)
        case .int(let value): self = .int(value)
        case .double(let value): self = .double(value)
        case .string(let value): self = .string(value)
        case .bytes(let value): self = .string(value.base64EncodedString())
        case .timestamp(let value): self = .string(WireTime.format(value))
        case .decimal(let scale, let value): self = .double(Double(value) / pow(10, Double(scale)))
        case .array(let values): self = .array(values.map(JSONValue.init))
        case .table(let values): self = .object(values.mapValues(JSONValue.init))
        case .void: self = .null
        }
    }

    /// A delivered message as one JSON document (`events tail --json`, `dlq show --json`): the
    /// properties that are set, the headers, and the body as JSON when it is JSON.
    public init(_ delivery: AMQPDelivery) {
        let properties = delivery.properties
        var fields: [String: JSONValue] = [:]
        func set(_ key: String, _ value: String?) { if let value { fields[key] = .string(value) } }
        set("message_id", properties.messageID)
        set("type", properties.type)
        set("correlation_id", properties.correlationID)
        set("content_type", properties.contentType)
        set("reply_to", properties.replyTo)
        set("expiration", properties.expiration)
        set("app_id", properties.appID)
        set("timestamp", properties.timestamp.map(WireTime.format))
        if let mode = properties.deliveryMode { fields["delivery_mode"] = .int(Int64(mode.rawValue)) }
        let body = JSONValue.parse(delivery.body) ?? .string(String(decoding: delivery.body, as: UTF8.self))
        self = .object([
            "exchange": .string(delivery.exchange),
            "routing_key": .string(delivery.routingKey),
            "redelivered": .bool(delivery.redelivered),
            "properties": .object(fields),
            "headers": .object((properties.headers ?? [:]).mapValues(JSONValue.init)),
            "body": body,
        ])
    }
}

extension AMQPFieldValue {
    /// A JSON value as a header value (the way back from `JSONValue(_: AMQPFieldValue)`):
    /// text stays text (a timestamp or base64 written as JSON cannot be told from text), null
    /// is void.
    public init(jsonValue value: JSONValue) {
        switch value {
        case .null: self = .void
        case .bool(let flag): self = .bool(flag)
        case .int(let number): self = .int(number)
        case .double(let number): self = .double(number)
        case .string(let text): self = .string(text)
        case .array(let values): self = .array(values.map(AMQPFieldValue.init(jsonValue:)))
        case .object(let values): self = .table(values.mapValues(AMQPFieldValue.init(jsonValue:)))
        }
    }

    /// A value from `JSONSerialization` as a header value. An integer beyond Int64 stays a
    /// number as a double instead of wrapping around.
    public init(json value: Any) {
        switch value {
        case let text as String:
            self = .string(text)
        case let number as NSNumber:
            // JSON booleans come as NSNumber too; their Objective-C type is char.
            switch String(cString: number.objCType) {
            case "c", "B": self = .bool(number.boolValue)
            case "d", "f": self = .double(number.doubleValue)
            case "Q": self = Int64(exactly: number.uint64Value).map(AMQPFieldValue.int) ?? .double(number.doubleValue)
            default: self = .int(number.int64Value)
            }
        case let array as [Any]:
            self = .array(array.map(AMQPFieldValue.init(json:)))
        case let object as [String: Any]:
            self = .table(object.mapValues(AMQPFieldValue.init(json:)))
        default:
            self = .void
        }
    }
}
