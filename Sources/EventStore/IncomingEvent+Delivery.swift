import Foundation
import Warren
import WarrenAMQP
import WarrenContract

extension IncomingEvent {
    /// Why a delivery cannot be stored; it is parked with this as `x-error`.
    struct Unstorable: Error {
        var reason: String
    }

    /// The most one stored event may take in an events.query reply, in bytes: a reply may have
    /// 16 MiB (`RPCResponder.Configuration.maxReplyBytes`), and the page around it needs a little.
    static let maxStoredBytes = 15 << 20

    /// Reads an event as any AMQP client may have published it. Only the message id is
    /// required: without it, storing each event once is impossible.
    init(_ delivery: AMQPDelivery, encoder: JSONEncoder) throws(Unstorable) {
        let properties = delivery.properties
        let headers = properties.headers ?? [:]
        guard let id = properties.messageID, !id.isEmpty else {
            throw Unstorable(reason: "the event has no message_id: the event store cannot tell it from a redelivery; publish it with one")
        }
        if let unstorable = Envelope(delivery: delivery).invalidField(passedOn: false) {
            throw Unstorable(reason: unstorable.message)
        }
        guard !delivery.routingKey.utf8.contains(0) else {
            throw Unstorable(reason: "the routing key contains NUL (\\0), which cannot be stored exactly")
        }
        // Kept as it came or not at all: what decoding changed (a header cut at 32 levels, a
        // saturated integer, repaired text), or what the stored JSON would change, would be
        // served by events.query and republished by `warren replay` as if it had been sent.
        if !properties.decodingLosses.isEmpty {
            throw Unstorable(
                reason: "the event store cannot keep the event as it came: " + properties.decodingLosses.joined(separator: "; ")
                    + " (this copy carries what was decoded, not the original bytes)")
        }
        // The publishing service, stored as the event's `source`: one with NUL would be cut
        // (or, as before, dropped) on its way into SQLite.
        if properties.appID?.utf8.contains(0) == true {
            throw Unstorable(reason: "the event store cannot keep the event as it came: app_id contains NUL (\\0), which cannot be stored exactly")
        }
        if let change = Self.alteration(in: headers) {
            throw Unstorable(reason: "the event store cannot keep the event as it came: \(change)")
        }
        let headersJSON: String
        do {
            headersJSON = String(decoding: try encoder.encode(headers.mapValues(JSONValue.init)), as: UTF8.self)
        } catch {
            throw Unstorable(reason: "the event's headers cannot be written as JSON: \(error)")
        }
        // Each event must come back in an events.query reply on its own (a page always holds
        // one): a larger one would stop every reader at its position for good. A body is
        // stored as JSON as it came, or else as base64, a third larger.
        var size = headersJSON.utf8.count + (delivery.body.count + 2) / 3 * 4 + 2 + 4_096
        if size > Self.maxStoredBytes, (try? JSONSerialization.jsonObject(with: delivery.body, options: [.fragmentsAllowed])) != nil {
            size = headersJSON.utf8.count + delivery.body.count + 4_096
        }
        guard size <= Self.maxStoredBytes else {
            throw Unstorable(
                reason: "the event would take about \(size) bytes in an events.query reply, more than the \(Self.maxStoredBytes) "
                    + "one event may: it could never be read back")
        }
        self.init(
            id: id,
            type: properties.type ?? delivery.routingKey,
            routingKey: delivery.routingKey,
            aggregateID: headers[WireHeader.aggregateID]?.stringValue,
            correlationID: headers[WireHeader.correlationID]?.stringValue ?? properties.correlationID,
            causationID: headers[WireHeader.causationID]?.stringValue,
            timestamp: WireTime.format(properties.timestamp ?? Date()),
            headersJSON: headersJSON,
            source: properties.appID,
            recordedAt: WireTime.format(Date()),
            body: delivery.body)
    }

    /// The latest header timestamp the stored JSON writes as it is (`WireTime.format` clamps
    /// later ones to the end of year 9999): 9999-12-31T23:59:59Z.
    static let latestHeaderTimestamp = Date(timeIntervalSince1970: 253_402_300_799)

    /// The first header value the stored JSON (`JSONValue(_:)`) would change, said in a
    /// sentence, or nil. A decimal becomes a double (`1.10` with scale 2 is not 1.1 exactly), and
    /// a timestamp after year 9999 the end of 9999. Bytes and timestamps before that are stored
    /// exactly, as base64 and UTC text (the schema's representation, documented in the README).
    static func alteration(in headers: AMQPTable) -> String? {
        var pending: [(path: String, value: AMQPFieldValue)] = headers.map { ($0.key, $0.value) }
        while let (path, value) = pending.popLast() {
            switch value {
            case .decimal:
                return "the header \(path.debugDescription) is an AMQP decimal, which would be stored (and replayed) as an inexact double"
            case .timestamp(let date) where date > latestHeaderTimestamp:
                return "the header \(path.debugDescription) is a timestamp after year 9999, which would be stored as the end of 9999"
            case .table(let table):
                for (key, inner) in table { pending.append(("\(path).\(key)", inner)) }
            case .array(let values):
                for (offset, inner) in values.enumerated() { pending.append(("\(path)[\(offset)]", inner)) }
            default:
                continue
            }
        }
        return nil
    }
}
