import Foundation
import GRDB

/// The event log in an embedded SQLite database (WAL: queries read while the ingestor writes).
///
/// Every index ends, implicitly, in the rowid, which is the position: the index on `type` is
/// an index on (type, position), so "type = ? AND position > ? ORDER BY position LIMIT n"
/// reads exactly n index entries, whatever the table's size. Each query is steered to the
/// index of its most selective filter with `INDEXED BY` (or to the position order itself),
/// never to a plan that sorts all matches for each page. That is also why there is no index on
/// the timestamp: it would yield rows in time order, not position order, so since/until are
/// checked along whichever walk in position order the other filters chose.
final class SQLiteEventLog: EventLog {
    /// A type glob matching more types than this is filtered during a scan in position order
    /// instead of merging one index range per type.
    static let maxMergedTypes = 64

    private let database: DatabasePool

    init(path: String) throws {
        var configuration = Configuration()
        configuration.label = "events"
        // Another instance on the same file, or a long read, waits instead of failing.
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            // The unique id and the id indexes take random keys: keeping their pages in memory
            // is what keeps the millionth append as fast as the first.
            try db.execute(sql: "PRAGMA cache_size = -65536")
        }
        database = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("events") { db in
            try db.execute(
                sql: """
                    CREATE TABLE events (
                        position INTEGER PRIMARY KEY AUTOINCREMENT,
                        event_id TEXT NOT NULL UNIQUE,
                        type TEXT NOT NULL,
                        routing_key TEXT NOT NULL,
                        aggregate_id TEXT,
                        correlation_id TEXT,
                        causation_id TEXT,
                        timestamp TEXT NOT NULL,
                        headers TEXT NOT NULL,      -- a JSON object
                        body TEXT NOT NULL,         -- JSON, spliced into replies as it is
                        body_encoding TEXT          -- 'base64' when the body was not JSON (then a JSON string)
                    );
                    CREATE INDEX events_by_type ON events(type);
                    CREATE INDEX events_by_aggregate ON events(aggregate_id);
                    CREATE INDEX events_by_correlation ON events(correlation_id);
                    CREATE TABLE event_types (type TEXT PRIMARY KEY) WITHOUT ROWID;
                    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
                        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
                    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
                        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
                    """)
        }
        migrator.registerMigration("events_source") { db in
            // The publishing service (AMQP app_id), for the flows `warren flow` draws.
            try db.execute(sql: "ALTER TABLE events ADD COLUMN source TEXT")
            // When the store took the event, in milliseconds (an AMQP timestamp has seconds).
            try db.execute(sql: "ALTER TABLE events ADD COLUMN recorded_at TEXT")
        }
        return migrator
    }

    func append(_ events: [IncomingEvent]) async throws -> Int {
        try await database.write { db in
            let isJSON = try db.cachedStatement(sql: "SELECT json_valid(?)")
            let insert = try db.cachedStatement(
                sql: """
                    INSERT OR IGNORE INTO events
                        (event_id, type, routing_key, aggregate_id, correlation_id, causation_id, timestamp, headers, body, body_encoding, source, recorded_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            var stored = 0
            var types = Set<String>()
            for event in events {
                let (body, encoding) = try Self.storedBody(event.body, isJSON: isJSON)
                try insert.execute(arguments: [
                    event.id, event.type, event.routingKey, event.aggregateID, event.correlationID, event.causationID,
                    event.timestamp, event.headersJSON, body, encoding, event.source, event.recordedAt,
                ])
                stored += db.changesCount
                types.insert(event.type)
            }
            let newType = try db.cachedStatement(sql: "INSERT OR IGNORE INTO event_types (type) VALUES (?)")
            for type in types { try newType.execute(arguments: [type]) }
            return stored
        }
    }

    /// JSON as it came; anything else (not UTF-8, not JSON) as a base64 JSON string.
    private static func storedBody(_ body: Data, isJSON: Statement) throws -> (String, String?) {
        if let text = String(validating: body, as: UTF8.self), try Bool.fetchOne(isJSON, arguments: [text]) == true {
            return (text, nil)
        }
        return ("\"\(body.base64EncodedString())\"", "base64")
    }

    func page(_ query: EventQuery) async throws -> EventLogPage {
        try await database.read { db in
            var filter = Filter(query)
            let positions: String
            if query.aggregateID != nil {
                positions = filter.positions(drivenBy: .aggregate)
            } else if query.correlationID != nil {
                positions = filter.positions(drivenBy: .correlation)
            } else if let pattern = query.typePattern, !pattern.contains("*") {
                positions = filter.positions(drivenBy: .type(pattern))
            } else if let pattern = query.typePattern {
                let types = try String.fetchAll(
                    db, sql: "SELECT type FROM event_types WHERE type GLOB ? LIMIT ?",
                    arguments: [Self.sqliteGlob(pattern), Self.maxMergedTypes + 1])
                if types.isEmpty { return EventLogPage(eventsJSON: Data(), count: 0, next: nil) }
                if types.count > Self.maxMergedTypes {
                    positions = filter.positions(drivenBy: .position)
                } else {
                    // One index range per matching type, merged in position order.
                    positions = types.map { "SELECT position FROM (\(filter.positions(drivenBy: .type($0))))" }
                        .joined(separator: " UNION ALL ") + " ORDER BY position LIMIT ?"
                    filter.arguments.append(query.limit + 1)
                }
            } else {
                positions = filter.positions(drivenBy: .position)
            }

            // One more than asked for tells whether there is a next page.
            let rows = try Row.fetchCursor(
                db, sql: "SELECT \(Self.storedEventJSON), position FROM events WHERE position IN (\(positions)) ORDER BY position",
                arguments: StatementArguments(filter.arguments))
            var json = Data()
            json.reserveCapacity(query.limit * 512)
            var count = 0
            var last: Int64 = 0
            var more = false
            while let row = try rows.next() {
                if count == query.limit {
                    more = true
                    break
                }
                // A page is cut short by size too: events with large headers or bodies would
                // otherwise make a reply larger than a reply may be, and the query fail.
                if count > 0, json.count + (try row.withUnsafeData(atIndex: 0) { $0?.count ?? 0 }) >= Self.maxPageBytes {
                    more = true
                    break
                }
                if count > 0 { json.append(UInt8(ascii: ",")) }
                try row.withUnsafeData(atIndex: 0) { bytes in if let bytes { json.append(bytes) } }
                last = row[1]
                count += 1
            }
            return EventLogPage(eventsJSON: json, count: count, next: more ? last : nil)
        }
    }

    /// The most event JSON in one page, in bytes: half of what a reply may carry
    /// (`RPCResponder.Configuration.maxReplyBytes`, 16 MiB), so that the rest of the reply fits
    /// too. A page always holds at least one event.
    static let maxPageBytes = 8 * 1024 * 1024

    /// A StoredEvent built by SQLite: strings quoted by `json_quote`, headers and body spliced
    /// as stored, absent ids left out.
    private static let storedEventJSON = """
        '{"position":' || position || ',"id":' || json_quote(event_id) || ',"type":' || json_quote(type)
        || ',"routingKey":' || json_quote(routing_key)
        || CASE WHEN aggregate_id IS NULL THEN '' ELSE ',"aggregateId":' || json_quote(aggregate_id) END
        || CASE WHEN correlation_id IS NULL THEN '' ELSE ',"correlationId":' || json_quote(correlation_id) END
        || CASE WHEN causation_id IS NULL THEN '' ELSE ',"causationId":' || json_quote(causation_id) END
        || CASE WHEN source IS NULL THEN '' ELSE ',"source":' || json_quote(source) END
        || CASE WHEN recorded_at IS NULL THEN '' ELSE ',"recordedAt":"' || recorded_at || '"' END
        || ',"timestamp":"' || timestamp || '","headers":' || headers || ',"body":' || body
        || CASE WHEN body_encoding IS NULL THEN '' ELSE ',"bodyEncoding":' || json_quote(body_encoding) END || '}'
        """

    /// Our glob (`*` is the only wildcard) in SQLite's GLOB syntax, where `?` and `[` are
    /// wildcards too and so are matched literally through a one-character class.
    static func sqliteGlob(_ pattern: String) -> String {
        var glob = ""
        for character in pattern {
            switch character {
            case "?": glob += "[?]"
            case "[": glob += "[[]"
            default: glob.append(character)
            }
        }
        return glob
    }

    /// The query's conditions, as SQL and arguments, for position subqueries.
    private struct Filter {
        /// The index a subquery walks, in position order; the other filters are checked on
        /// the rows it meets.
        enum Driver {
            case aggregate, correlation
            /// One exact type.
            case type(String)
            /// The table itself, in position order.
            case position

            /// Whether walking it already keeps only the wanted type.
            var matchesType: Bool {
                if case .type = self { return true }
                return false
            }
        }

        let query: EventQuery
        var arguments: [any DatabaseValueConvertible] = []

        init(_ query: EventQuery) { self.query = query }

        /// "SELECT position FROM events INDEXED BY … WHERE … ORDER BY position LIMIT <limit + 1>".
        mutating func positions(drivenBy driver: Driver) -> String {
            var conditions: [String] = []
            func add(_ condition: String, _ argument: any DatabaseValueConvertible) {
                conditions.append(condition)
                arguments.append(argument)
            }
            let index: String
            switch driver {
            case .aggregate: index = "INDEXED BY events_by_aggregate"
            case .correlation: index = "INDEXED BY events_by_correlation"
            case .type(let type):
                index = "INDEXED BY events_by_type"
                add("type = ?", type)
            case .position: index = "NOT INDEXED"
            }
            if let aggregateID = query.aggregateID { add("aggregate_id = ?", aggregateID) }
            if let correlationID = query.correlationID { add("correlation_id = ?", correlationID) }
            if let pattern = query.typePattern, !driver.matchesType {
                add("type GLOB ?", SQLiteEventLog.sqliteGlob(pattern))
            }
            if let since = query.since { add("timestamp >= ?", since) }
            if let until = query.until { add("timestamp < ?", until) }
            add("position > ?", query.after ?? 0)
            arguments.append(query.limit + 1)
            return "SELECT position FROM events \(index) WHERE \(conditions.joined(separator: " AND ")) ORDER BY position LIMIT ?"
        }
    }
}
