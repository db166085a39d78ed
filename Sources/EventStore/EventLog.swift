import Foundation

/// Where the event store keeps events: an append-only log read back in append order.
/// Handlers and the ingestor know only this protocol, so that a PostgreSQL log (several
/// instances on one database) can replace the embedded SQLite one without touching them.
protocol EventLog: Sendable {
    /// Appends the events in one transaction, skipping every id already stored (also within
    /// the batch): a redelivered or replayed event is stored once. Returns how many were new.
    func append(_ events: [IncomingEvent]) async throws -> Int

    /// The events matching `query` after its cursor, oldest first. A new event never appears
    /// behind a cursor already handed out, so paging with `next` misses nothing.
    func page(_ query: EventQuery) async throws -> EventLogPage
}

/// One event as it came off the broker.
struct IncomingEvent: Sendable {
    /// The AMQP `message_id`: what makes appending idempotent.
    var id: String
    var type: String
    var routingKey: String
    var aggregateID: String?
    var correlationID: String?
    var causationID: String?
    /// `WireTime.format` form, so that text order is time order.
    var timestamp: String
    /// The AMQP headers as a JSON object.
    var headersJSON: String
    /// The AMQP `app_id`: the service that published it, for `events.flow`.
    var source: String? = nil
    /// When the store took it, `WireTime.format` form: milliseconds, where an AMQP `timestamp`
    /// has whole seconds; `events.flow` measures the gaps between events with it.
    var recordedAt: String? = nil
    /// As published: stored as JSON when it is JSON, otherwise base64.
    var body: Data
}

/// A validated `events.query`.
struct EventQuery: Sendable, Equatable {
    /// `*` matches any run of characters, dots included; everything else matches itself.
    var typePattern: String?
    /// Inclusive, in `WireTime.format` form.
    var since: String?
    /// Exclusive, in `WireTime.format` form.
    var until: String?
    var aggregateID: String?
    var correlationID: String?
    /// Only events after this position.
    var after: Int64?
    var limit: Int
}

/// One page of `events.query`'s reply as the log builds it, the reply's bytes (clients read it as `EventPage`).
struct EventLogPage: Sendable {
    /// The page's StoredEvent objects, comma-separated: the inside of the reply's array, kept
    /// as bytes so that stored bodies go out without being decoded and encoded again.
    var eventsJSON: Data
    var count: Int
    /// The position to continue after, nil when nothing more matches.
    var next: Int64?

    /// The reply body: `{"events":[…],"next":"<cursor>"|null}`.
    var replyJSON: Data {
        var reply = Data()
        reply.reserveCapacity(eventsJSON.count + 40)
        reply.append(contentsOf: #"{"events":["#.utf8)
        reply.append(eventsJSON)
        reply.append(contentsOf: #"],"next":"#.utf8)
        if let next {
            reply.append(contentsOf: "\"\(next)\"}".utf8)
        } else {
            reply.append(contentsOf: "null}".utf8)
        }
        return reply
    }
}
