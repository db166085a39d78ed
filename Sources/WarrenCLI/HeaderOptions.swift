import ArgumentParser
import Foundation
import WarrenAMQP
import WarrenContract

/// `--header key=value` options, read the way the contract reads each header
/// (schemas/warren/*-headers.schema.json): a header with a flag twin gets the flag's check, one
/// the contract gives a form gets that form's, and one Warren itself writes is refused. Nothing
/// given is silently replaced or sent malformed; every refusal is a usage error before anything
/// is sent.
struct HeaderOptions {
    enum Command: String {
        case call, publish
    }

    /// The headers to send, `x-correlation-id` left out: it is the correlation id's, which
    /// `correlationID` carries (from `--correlation-id` or the header, never two different ones).
    var headers: AMQPTable = [:]
    var correlationID: String?

    /// Warren's ids travel in AMQP short strings (`message_id`, `correlation_id`) and are stored
    /// as text that C ends at NUL: 1 to 255 bytes without NUL, for every flag and header alike.
    static func checkID(_ value: String, _ what: String) throws {
        guard !value.isEmpty, value.utf8.count <= 255, !value.utf8.contains(0) else {
            throw ValidationError("\(what) must be 1 to 255 bytes without NUL (it was \(value.utf8.count) bytes\(value.utf8.contains(0) ? " with a NUL" : ""))")
        }
    }

    /// W3C trace context (schemas/warren/event-headers.schema.json `traceparent`).
    static func isTraceparent(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        func isHex(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
        }
        return bytes.count == 55
            && bytes.enumerated().allSatisfy { index, byte in [2, 35, 52].contains(index) ? byte == UInt8(ascii: "-") : isHex(byte) }
    }

    /// Headers Warren writes itself, each with who does: sent by hand, the message would be
    /// taken for a reply, a dead letter or a replay it is not.
    static let writtenByWarren: [String: String] = [
        WireHeader.status: "it marks replies",
        WireHeader.error: "Warren writes it when it sets a message aside",
        WireHeader.attempts: "Warren counts the tries of a message it sets aside",
        WireHeader.originalRoutingKey: "Warren writes it when it sets an event aside, and a subscriber would take it for the event's type",
        WireHeader.droppedHeaders: "Warren writes it on a dead-letter copy",
        WireHeader.replayed: "warren replay sets it",
        WireHeader.originalCorrelationID: "warren replay sets it",
    ]

    /// Headers RabbitMQ writes itself when it dead-letters or redelivers a message: sent by hand,
    /// the message would be taken for a dead letter, or a redelivery, it is not.
    static func writtenByTheBroker(_ name: String) -> Bool {
        ["x-death", "x-delivery-count", "x-received-from"].contains(name) || name.hasPrefix("x-first-death-") || name.hasPrefix("x-last-death-")
    }

    init(_ options: [String], for command: Command, correlationID flag: String?) throws {
        if let flag { try Self.checkID(flag, "--correlation-id") }
        correlationID = flag
        for option in options {
            guard let equals = option.firstIndex(of: "="), equals != option.startIndex else {
                throw ValidationError("--header '\(Terminal.escape(option))' must be key=value, e.g. --header x-tenant=acme")
            }
            let key = String(option[..<equals])
            let value = String(option[option.index(after: equals)...])
            guard key.utf8.count <= 255, !key.utf8.contains(0) else {
                throw ValidationError("--header: a header name must be 1 to 255 bytes without NUL (it was \(key.utf8.count) bytes)")
            }
            let name = key.lowercased()
            guard headers[key] == nil, !(name == WireHeader.correlationID && correlationID != nil && flag == nil) else {
                throw ValidationError("--header \(Terminal.escape(key)) is given twice: give each header once")
            }
            switch name {
            case _ where name != key && Self.meaningful(name):
                throw ValidationError("--header \(Terminal.escape(key)): header names are case-sensitive; write \(name)")
            case WireHeader.correlationID:
                try Self.checkID(value, "--header \(WireHeader.correlationID)")
                if let flag, flag != value {
                    throw ValidationError("--correlation-id and --header \(WireHeader.correlationID) name two different correlation ids: give one")
                }
                correlationID = value
                continue
            case WireHeader.causationID, WireHeader.aggregateID:
                try Self.checkID(value, "--header \(name)")
            case WireHeader.deadline:
                throw ValidationError(
                    command == .call
                        ? "--header \(WireHeader.deadline): the deadline is --timeout's (warren call sends it as \(WireHeader.deadline)); use --timeout"
                        : "--header \(WireHeader.deadline): events carry no deadline (it is a request header, set by warren call --timeout)")
            case WireHeader.traceparent:
                guard Self.isTraceparent(value) else {
                    throw ValidationError("--header traceparent must be W3C trace context, 00-<32 hex>-<16 hex>-<2 hex> in lower case")
                }
            case "tracestate":
                guard value.unicodeScalars.count <= 512, !value.utf8.contains(0) else {
                    throw ValidationError("--header tracestate must be at most 512 characters without NUL")
                }
            default:
                if let who = Self.writtenByWarren[name] {
                    throw ValidationError("--header \(name) cannot be sent by hand: \(who)")
                }
                if Self.writtenByTheBroker(name) {
                    throw ValidationError("--header \(name) cannot be sent by hand: RabbitMQ writes it when it dead-letters or redelivers a message")
                }
            }
            headers[key] = .string(value)
        }
    }

    /// Whether the contract gives the header (in lower case) a meaning.
    static func meaningful(_ name: String) -> Bool {
        [WireHeader.correlationID, WireHeader.causationID, WireHeader.aggregateID, WireHeader.deadline, WireHeader.traceparent, "tracestate"]
            .contains(name) || writtenByWarren[name] != nil || writtenByTheBroker(name)
    }
}
