public import Foundation
public import WarrenAMQP

/// An event as the event store recorded it: one element of `events.query`'s reply
/// (schemas/event-store/stored-event.schema.json). The body stays the JSON bytes it came as
/// and the headers are already AMQP values, so a replay passes both on without looking inside.
public struct StoredEvent: Sendable {
    /// Append order; ascending, never reused.
    public var position: Int64
    /// The event's AMQP message_id.
    public var id: String
    public var type: String
    public var aggregateId: String?
    public var correlationId: String?
    public var causationId: String?
    /// `WireTime.format` form: `2026-11-20T14:13:42.000Z`.
    public var timestamp: String
    public var headers: AMQPTable
    /// The body as the JSON value published (or, with `bodyEncoding`, base64 text).
    public var body: Data

    public init(
        position: Int64, id: String, type: String, aggregateId: String? = nil, correlationId: String? = nil, causationId: String? = nil,
        timestamp: String, headers: AMQPTable = [:], body: Data
    ) {
        self.position = position
        self.id = id
        self.type = type
        self.aggregateId = aggregateId
        self.correlationId = correlationId
        self.causationId = causationId
        self.timestamp = timestamp
        self.headers = headers
        self.body = body
    }
}

/// One page of `events.query`'s reply (schemas/event-store/events.query.reply.schema.json):
/// `{"events":[StoredEvent…],"next":"<cursor>"|null}`; `next` is the `after` of the following
/// page, nil at the end.
public struct EventPage: Sendable {
    public var events: [StoredEvent]
    public var next: String?

    public init(events: [StoredEvent], next: String?) {
        self.events = events
        self.next = next
    }
}
