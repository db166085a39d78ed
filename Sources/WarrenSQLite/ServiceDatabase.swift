import Foundation
public import GRDB
public import Logging
public import ServiceLifecycle
public import Warren

/// Opens a service's own SQLite database the same way for every service: the path from the
/// environment, WAL so that readers never wait for the writer, a busy timeout so that several
/// instances of a service on one host can share the file, and the service's migrations (plus
/// the outbox, processed-message and command-inbox tables) applied before anything else runs.
public enum ServiceDatabase {
    /// `DATABASE_PATH`, or `$DATA_DIR/<service>.sqlite` (`DATA_DIR` defaults to `data`).
    public static func path(service: String, environment: [String: String]) -> String {
        if let path = environment["DATABASE_PATH"], !path.isEmpty { return path }
        let directory = environment["DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "data"
        return URL(fileURLWithPath: directory).appendingPathComponent("\(service).sqlite").path
    }

    /// Opens (creating folders as needed) and migrates. `migrations` registers the service's
    /// own tables; the runtime's tables come first.
    public static func open(
        service: String, environment: [String: String], migrations: (inout DatabaseMigrator) -> Void
    ) throws -> DatabasePool {
        let path = path(service: service, environment: environment)
        try FileManager.default.createDirectory(
            at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")  // durable across process crashes under WAL
        }
        let pool = try DatabasePool(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        Outbox.registerMigration(&migrator)
        SQLiteProcessedMessages.registerMigration(&migrator)
        SQLiteCommandInbox.registerMigration(&migrator)
        migrations(&migrator)
        try migrator.migrate(pool)
        return pool
    }
}

extension ServiceDatabase {
    /// The outbox relays to run: all of them, unless `OUTBOX_RELAY=paused`, which keeps events
    /// in the outbox (to hold publishing during maintenance, or to test recovery); they go out
    /// once the service runs again without it.
    public static func relays(_ relays: [OutboxRelay], environment: [String: String], logger: Logger) -> [any Service] {
        guard environment["OUTBOX_RELAY"] == "paused" else { return relays }
        logger.warning("OUTBOX_RELAY=paused: events stay in the outbox until the service runs without it")
        return []
    }
}

/// Page cursors are opaque to callers; a service's store makes them from the position
/// (autoincremented row id) of the last row it served, so that paging is stable while rows are
/// added.
public enum PageCursor {
    public static func position(_ cursor: String, field: String = "cursor") throws(ServiceError) -> Int64 {
        guard let position = Int64(cursor), position >= 0 else {
            throw .invalid("field '\(field)' must be the 'next' of a previous page")
        }
        return position
    }
}

/// A page of a list reply, `{"<items>": […], "next": "…"}`: the rows under the name the
/// contract gives them (`users`, `orders`) and the cursor of the following page, null (not
/// absent) at the end.
public struct Page<Item: Encodable & Sendable>: Encodable, Sendable {
    public let key: String
    public let items: [Item]
    public let next: String?

    /// A page from rows fetched in position order with one more than `limit` (`LIMIT limit + 1`):
    /// that extra row only says whether a next page exists.
    public init(_ key: String, rows: [Row], limit: Int, item: (Row) -> Item) {
        let page = rows.prefix(limit)
        let next: Int64? = rows.count > limit ? page.last?["position"] : nil
        self.key = key
        self.items = page.map(item)
        self.next = next.map(String.init)
    }

    /// A page from items already cut to the limit and the position to continue after (nil at
    /// the end): for stores that do not read GRDB rows (PostgreSQL).
    public init(_ key: String, items: [Item], next: Int64?) {
        self.key = key
        self.items = items
        self.next = next.map(String.init)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(items, forKey: Key(stringValue: key))
        try container.encode(next, forKey: Key(stringValue: "next"))
    }

    private struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
