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
            source: properties.appID.flatMap { $0.utf8.contains(0) ? nil : $0 },
            recordedAt: WireTime.format(Date()),
            body: delivery.body)
    }
}
