import Foundation
import Logging
import PostgresNIO
import WarrenPostgres

/// The event log in PostgreSQL (`DATABASE_URL`), for several event-store instances sharing one
/// database.
///
/// Positions follow commit order. A plain `bigserial` would not: a transaction that took
/// position 10 can commit after one that took 11, and a reader who was handed cursor 11 would
/// never see 10. So every append first takes one transaction-level advisory lock
/// (`pg_advisory_xact_lock`), and only then draws positions; the lock is released after the
/// commit is visible, so the next writer's positions are all above positions already committed,
/// and no reader can see a position while a lower one is still to come. Appends are serialized
/// (one batch at a time across instances), which is the price; batches keep it small, since
/// each holds the lock only for its inserts and commit. A reader needs nothing: any snapshot it
/// reads is a prefix of the positions. An advisory lock rather than a counter row: it serializes
/// the same, and leaves no row to bloat with an update per batch.
final class PostgresEventLog: EventLog {
    /// The advisory lock key of appends to this database's log ("events" in ASCII).
    static let appendLock: Int64 = 0x6576_656e_7473

    let database: PostgresServiceDatabase

    init(database: PostgresServiceDatabase) { self.database = database }

    static let migrations: [PostgresServiceDatabase.Migration] = [
        .init("events", [
            """
            CREATE TABLE events (
                position bigserial PRIMARY KEY,
                event_id text NOT NULL UNIQUE,
                type text NOT NULL,
                routing_key text NOT NULL,
                aggregate_id text,
                correlation_id text,
                causation_id text,
                timestamp text NOT NULL,
                headers text NOT NULL,
                body text NOT NULL,
                body_encoding text
            )
            """,
            "CREATE INDEX events_by_type ON events (type, position)",
            "CREATE INDEX events_by_aggregate ON events (aggregate_id, position)",
            "CREATE INDEX events_by_correlation ON events (correlation_id, position)",
            """
            CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'the event log is append-only'; END $$
            """,
            "CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only()",
        ]),
        // As in SQLite: the publishing service (AMQP app_id), and when the store took the event
        // in milliseconds (an AMQP timestamp has seconds), for the flows `warren flow` draws.
        .init("events_source", ["ALTER TABLE events ADD COLUMN source text", "ALTER TABLE events ADD COLUMN recorded_at text"]),
    ]

    func append(_ events: [IncomingEvent]) async throws -> Int {
        let logger = database.logger
        return try await database.transaction { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.appendLock))", logger: logger)
            var stored = 0
            for event in events {
                let (body, encoding) = Self.storedBody(event.body)
                let inserted = try await connection.query(
                    """
                    INSERT INTO events
                        (event_id, type, routing_key, aggregate_id, correlation_id, causation_id, timestamp, headers, body, body_encoding,
                         source, recorded_at)
                    VALUES (\(event.id), \(event.type), \(event.routingKey), \(event.aggregateID), \(event.correlationID), \(event.causationID),
                            \(event.timestamp), \(event.headersJSON), \(body), \(encoding), \(event.source), \(event.recordedAt))
                    ON CONFLICT (event_id) DO NOTHING RETURNING 1
                    """, logger: logger)
                for try await _ in inserted { stored += 1 }
            }
            return stored
        }
    }

    /// JSON as it came; anything else (not UTF-8, not JSON) as a base64 JSON string.
    static func storedBody(_ body: Data) -> (String, String?) {
        if let text = String(validating: body, as: UTF8.self),
            (try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed])) != nil
        {
            return (text, nil)
        }
        return ("\"\(body.base64EncodedString())\"", "base64")
    }

    func page(_ query: EventQuery) async throws -> EventLogPage {
        var conditions: [String] = []
        var binds = PostgresBindings()
        func add(_ condition: (String) -> String, _ value: String) {
            binds.append(value)
            conditions.append(condition("$\(binds.count)"))
        }
        if let aggregateID = query.aggregateID { add({ "aggregate_id = \($0)" }, aggregateID) }
        if let correlationID = query.correlationID { add({ "correlation_id = \($0)" }, correlationID) }
        if let pattern = query.typePattern {
            if pattern.contains("*") {
                add({ "type LIKE \($0)" }, Self.likePattern(pattern))
            } else {
                add({ "type = \($0)" }, pattern)
            }
        }
        if let since = query.since { add({ "timestamp >= \($0)" }, since) }
        if let until = query.until { add({ "timestamp < \($0)" }, until) }
        binds.append(query.after ?? 0)
        conditions.append("position > $\(binds.count)")
        // One more than asked for tells whether there is a next page.
        binds.append(query.limit + 1)
        let sql = "SELECT \(Self.storedEventJSON), position FROM events WHERE \(conditions.joined(separator: " AND ")) ORDER BY position LIMIT $\(binds.count)"

        var json = Data()
        json.reserveCapacity(min(query.limit, 1_000) * 512)
        var count = 0
        var last: Int64 = 0
        var more = false
        for try await (event, position) in try await database.query(PostgresQuery(unsafeSQL: sql, binds: binds)).decode((String, Int64).self) {
            if count == query.limit {
                more = true
                break
            }
            // A page is cut short by size too, as in the SQLite log (SQLiteEventLog.maxPageBytes).
            if count > 0, json.count + event.utf8.count >= SQLiteEventLog.maxPageBytes {
                more = true
                break
            }
            if count > 0 { json.append(UInt8(ascii: ",")) }
            json.append(contentsOf: event.utf8)
            last = position
            count += 1
        }
        return EventLogPage(eventsJSON: json, count: count, next: more ? last : nil)
    }

    /// Our glob (`*` is the only wildcard) as a LIKE pattern: `%` and `_` and the escape
    /// character itself match literally.
    static func likePattern(_ pattern: String) -> String {
        var like = ""
        for character in pattern {
            switch character {
            case "*": like += "%"
            case "%", "_", "\\": like += "\\" + String(character)
            default: like.append(character)
            }
        }
        return like
    }

    /// A StoredEvent built by PostgreSQL, as `SQLiteEventLog` builds it: strings quoted by
    /// `to_json`, headers and body spliced as stored, absent ids left out.
    private static let storedEventJSON = """
        '{"position":' || position || ',"id":' || to_json(event_id)::text || ',"type":' || to_json(type)::text
        || ',"routingKey":' || to_json(routing_key)::text
        || CASE WHEN aggregate_id IS NULL THEN '' ELSE ',"aggregateId":' || to_json(aggregate_id)::text END
        || CASE WHEN correlation_id IS NULL THEN '' ELSE ',"correlationId":' || to_json(correlation_id)::text END
        || CASE WHEN causation_id IS NULL THEN '' ELSE ',"causationId":' || to_json(causation_id)::text END
        || CASE WHEN source IS NULL THEN '' ELSE ',"source":' || to_json(source)::text END
        || CASE WHEN recorded_at IS NULL THEN '' ELSE ',"recordedAt":' || to_json(recorded_at)::text END
        || ',"timestamp":"' || timestamp || '","headers":' || headers || ',"body":' || body
        || CASE WHEN body_encoding IS NULL THEN '' ELSE ',"bodyEncoding":' || to_json(body_encoding)::text END || '}'
        """
}
