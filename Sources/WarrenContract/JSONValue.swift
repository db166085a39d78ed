import Foundation
import WarrenAMQP

/// Any JSON value: the documents the CLI prints with `--json` and the message bodies in them.
/// Integers stay integers (ids, cents, epoch ms).
enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
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

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    static func parse(_ data: Data) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: data)
    }

    func jsonText(pretty: Bool) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        // A header may hold a NaN or an infinity (an AMQP double is any double); JSON has no
        // such numbers, and failing would print the whole document as null. They become strings.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        // Encoding a JSONValue cannot fail now: every case is plain JSON.
        let data = (try? encoder.encode(self)) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}

extension JSONValue {
    /// An AMQP header value as JSON, for printing: timestamps as ISO 8601, bytes as base64.
    init(_ field: AMQPFieldValue) {
        switch field {
        case .bool(let value): self = .bool(value)
        case .int(let value): self = .int(value)
        case .double(let value): self = .double(value)
        case .string(let value): self = .string(value)
        case .bytes(let value): self = .string(value.base64EncodedString())
        case .timestamp(let value): self = .string(ISOTime.format(value))
        case .decimal(let scale, let value): self = .double(Double(value) / pow(10, Double(scale)))
        case .array(let values): self = .array(values.map(JSONValue.init))
        case .table(let values): self = .object(values.mapValues(JSONValue.init))
        case .void: self = .null
        }
    }

    /// A delivered message as one JSON document (`events tail --json`, `dlq show --json`): the
    /// properties that are set, the headers, and the body as JSON when it is JSON.
    init(_ delivery: AMQPDelivery) {
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
        set("timestamp", properties.timestamp.map(ISOTime.format))
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
