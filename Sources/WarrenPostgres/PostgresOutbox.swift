public import Foundation
public import Logging
public import PostgresNIO
public import Warren
public import WarrenSQLite

/// The transactional outbox on PostgreSQL: `enqueue` writes an event in the caller's
/// transaction, beside the state change that caused it; `OutboxRelay` (with
/// `PostgresOutboxStorage`) publishes it afterwards.
public enum PostgresOutbox {
    /// Records an event on `connection`, inside the caller's transaction; returns its envelope.
    @discardableResult
    public static func enqueue<Payload: Encodable>(
        _ connection: PostgresConnection, type: String, payload: Payload, aggregateID: String? = nil, causedBy cause: Envelope? = nil,
        logger: Logger
    ) async throws -> Envelope {
        let envelope = Outbox.tracedEnvelope(type: type, aggregateID: aggregateID, causedBy: cause)
        let body = try WireJSON.encode(payload)
        try await connection.query(
            """
            INSERT INTO warren_outbox (event_id, type, aggregate_id, correlation_id, causation_id, body, created_at, traceparent)
            VALUES (
                \(envelope.messageID), \(type), \(aggregateID), \(envelope.correlationID), \(envelope.causationID), \(body), \(Date()),
                \(envelope.traceparent))
            """, logger: logger)
        return envelope
    }
}

/// The outbox table in a PostgreSQL database shared by several instances.
///
/// Rows are claimed with a lease (`claimed_until`) taken by one short statement that picks
/// them `FOR UPDATE SKIP LOCKED`, rather than by a transaction held open until the broker
/// confirms: a transaction would pin a connection and row locks across network I/O to the
/// broker for every batch, and a relay stuck publishing would stall the others' view of those
/// rows. With the lease, relays of other instances skip rows another is claiming (SKIP
/// LOCKED) or holds (the lease), each confirmed row is marked sent, and the rows of a relay
/// that died mid-batch come free when the lease ends and go out then (at least once).
public struct PostgresOutboxStorage: OutboxStorage {
    private let database: PostgresServiceDatabase

    public init(database: PostgresServiceDatabase) { self.database = database }

    public func claim(limit: Int, lease: TimeInterval) async throws -> [OutboxEvent] {
        let leaseSeconds = lease
        let rows = try await database.query(
            """
            UPDATE warren_outbox SET claimed_until = now() + make_interval(secs => \(leaseSeconds))
            WHERE sequence IN (
                SELECT sequence FROM warren_outbox
                WHERE sent_at IS NULL AND failed_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
                ORDER BY sequence LIMIT \(limit)
                FOR UPDATE SKIP LOCKED)
            RETURNING sequence, event_id, type, aggregate_id, correlation_id, causation_id, body, created_at, traceparent
            """)
        var events: [OutboxEvent] = []
        for try await (sequence, eventID, type, aggregateID, correlationID, causationID, body, createdAt, traceparent) in rows.decode(
            (Int64, String, String, String?, String, String?, Data, Date, String?).self)
        {
            events.append(
                OutboxEvent(
                    sequence: sequence,
                    envelope: Envelope(
                        messageID: eventID, correlationID: correlationID, causationID: causationID, type: type, traceparent: traceparent,
                        aggregateID: aggregateID, timestamp: createdAt),
                    body: body))
        }
        // RETURNING follows no order: publish in the order the events were written.
        return events.sorted { $0.sequence < $1.sequence }
    }

    public func markSent(_ sequences: [Int64]) async throws {
        try await database.query("UPDATE warren_outbox SET sent_at = now() WHERE sequence = ANY(\(sequences))")
    }

    public func markFailed(_ sequence: Int64, reason: String) async throws {
        try await database.query("UPDATE warren_outbox SET failed_at = now(), failure = \(reason) WHERE sequence = \(sequence)")
    }

    public func release(_ sequences: [Int64]) async throws {
        try await database.query("UPDATE warren_outbox SET claimed_until = NULL WHERE sequence = ANY(\(sequences))")
    }

    public func pendingCount() async throws -> Int {
        let rows = try await database.query("SELECT count(*) FROM warren_outbox WHERE sent_at IS NULL AND failed_at IS NULL")
        for try await count in rows.decode(Int64.self) { return Int(clamping: count) }
        return 0
    }
}

extension OutboxRelay {
    /// The relay of a service's PostgreSQL outbox.
    public convenience init(database: PostgresServiceDatabase, publisher: EventPublisher, logger: Logger) {
        self.init(storage: PostgresOutboxStorage(database: database), publisher: publisher, logger: logger)
    }
}
