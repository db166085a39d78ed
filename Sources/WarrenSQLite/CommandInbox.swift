public import Foundation
public import GRDB
public import Logging
public import ServiceLifecycle
public import Warren

/// The command inbox in the service's SQLite database: the reply of every command
/// (`RPCHandlers.onCommand`) that committed, by `message_id`. A store calls `record` inside the
/// transaction of the command's effects, so that a commit always holds both and a redelivery
/// (say, the connection dropped before the ack) is answered with the stored reply instead of
/// applying the command again. Rows older than `retention` are removed while it runs as a
/// service: a retry later than that is executed as a new request.
public final class SQLiteCommandInbox: PrunedCommandInbox, Service {
    private let database: any DatabaseWriter
    public let retention: TimeInterval
    private let logger: Logger

    /// `retention`: how long a reply is kept, in seconds (7 days by default).
    public init(database: any DatabaseWriter, retention: TimeInterval = 7 * 86_400, logger: Logger = Logger(label: "warren.inbox")) {
        self.database = database
        self.retention = retention
        self.logger = logger
    }

    public static func registerMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("warren_command_inbox") { db in
            try db.create(table: "warren_command_inbox") { table in
                table.primaryKey("message_id", .text)
                table.column("operation", .text).notNull()
                table.column("fingerprint", .text).notNull()
                table.column("reply", .blob).notNull()
                table.column("created_at", .datetime).notNull()
            }
            try db.create(index: "warren_command_inbox_by_age", on: "warren_command_inbox", columns: ["created_at"])
        }
    }

    /// Records the command and its ok reply in the caller's transaction (call it from the same
    /// `write` as the effects). Does nothing for a nil command (a read, or a request without a
    /// `message_id`). Throws `CommandAlreadyApplied` when another delivery of the same command
    /// committed first: the transaction then rolls back and the responder answers with the
    /// reply stored by the first.
    public static func record(_ command: Command?, reply: some Encodable, in db: Database) throws {
        guard let command else { return }
        try db.execute(
            sql: """
                INSERT OR IGNORE INTO warren_command_inbox (message_id, operation, fingerprint, reply, created_at)
                VALUES (?, ?, ?, ?, ?)
                """,
            arguments: [command.messageID, command.operation, command.fingerprint, try WireJSON.encode(reply), Date()])
        guard db.changesCount > 0 else { throw CommandAlreadyApplied(messageID: command.messageID) }
    }

    public func storedReply(for messageID: String) async throws -> StoredReply? {
        try await database.read { db in
            try Row.fetchOne(
                db, sql: "SELECT operation, fingerprint, reply FROM warren_command_inbox WHERE message_id = ?", arguments: [messageID]
            ).map { row in StoredReply(operation: row["operation"], fingerprint: row["fingerprint"], body: row["reply"]) }
        }
    }

    /// Removes replies older than `retention`; returns how many.
    @discardableResult
    public func prune(now: Date = Date()) async throws -> Int {
        let cutoff = now.addingTimeInterval(-retention)
        return try await database.write { db in
            try db.execute(sql: "DELETE FROM warren_command_inbox WHERE created_at < ?", arguments: [cutoff])
            return db.changesCount
        }
    }

    /// Prunes once an hour until graceful shutdown.
    public func run() async throws {
        await pruneHourly(logger: logger)
    }
}
