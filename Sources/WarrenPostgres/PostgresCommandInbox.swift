public import Foundation
public import Logging
public import PostgresNIO
public import ServiceLifecycle
public import Warren

/// The command inbox in the service's PostgreSQL database, shared by all its instances: the
/// reply of every command that committed, by `message_id` (the primary key). `record` runs in
/// the transaction of the command's effects; when two instances run the same command at once,
/// the primary key decides: the second insert waits for the first transaction, finds the row
/// (`ON CONFLICT DO NOTHING` returns nothing) and throws `CommandAlreadyApplied`, so its
/// transaction rolls back and the responder answers with the first one's reply.
public final class PostgresCommandInbox: PrunedCommandInbox, Service {
    private let database: PostgresServiceDatabase
    public let retention: TimeInterval
    private let logger: Logger

    /// `retention`: how long a reply is kept, in seconds (7 days by default).
    public init(database: PostgresServiceDatabase, retention: TimeInterval = 7 * 86_400, logger: Logger = Logger(label: "warren.inbox")) {
        self.database = database
        self.retention = retention
        self.logger = logger
    }

    /// Records the command and its ok reply on `connection`, inside the effects' transaction.
    /// Does nothing for a nil command; throws `CommandAlreadyApplied` when another delivery of
    /// the same command committed first.
    public static func record(_ command: Command?, reply: some Encodable, on connection: PostgresConnection, logger: Logger) async throws {
        guard let command else { return }
        let body = try WireJSON.encode(reply)
        let inserted = try await connection.query(
            """
            INSERT INTO warren_command_inbox (message_id, operation, fingerprint, reply, created_at)
            VALUES (\(command.messageID), \(command.operation), \(command.fingerprint), \(body), \(Date()))
            ON CONFLICT (message_id) DO NOTHING RETURNING 1
            """, logger: logger)
        var count = 0
        for try await _ in inserted { count += 1 }
        guard count > 0 else { throw CommandAlreadyApplied(messageID: command.messageID) }
    }

    public func storedReply(for messageID: String) async throws -> StoredReply? {
        guard
            let row = try await database.first(
                "SELECT operation, fingerprint, reply FROM warren_command_inbox WHERE message_id = \(messageID)")
        else { return nil }
        let (operation, fingerprint, reply) = try row.decode((String, String, Data).self)
        return StoredReply(operation: operation, fingerprint: fingerprint, body: reply)
    }

    /// Removes replies older than `retention`; returns how many.
    @discardableResult
    public func prune(now: Date = Date()) async throws -> Int {
        let cutoff = now.addingTimeInterval(-retention)
        var removed = 0
        for try await _ in try await database.query("DELETE FROM warren_command_inbox WHERE created_at < \(cutoff) RETURNING 1") { removed += 1 }
        return removed
    }

    /// Prunes once an hour until graceful shutdown.
    public func run() async throws {
        await pruneHourly(logger: logger, describe: PostgresServiceDatabase.describe)
    }
}

/// Processed message ids in the service's PostgreSQL database. `record(_:on:logger:)` inside
/// the effect's transaction makes "apply at most once" exact across instances: the primary key
/// is the arbiter (a concurrent duplicate waits for the first transaction, then inserts
/// nothing and is told so).
public final class PostgresProcessedMessages: ProcessedMessages {
    private let database: PostgresServiceDatabase

    public init(database: PostgresServiceDatabase) { self.database = database }

    /// Records `messageID` on `connection`; false if it was already applied.
    public static func record(_ messageID: String, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        let inserted = try await connection.query(
            """
            INSERT INTO warren_processed_messages (message_id, processed_at) VALUES (\(messageID), \(Date()))
            ON CONFLICT (message_id) DO NOTHING RETURNING 1
            """, logger: logger)
        var count = 0
        for try await _ in inserted { count += 1 }
        return count > 0
    }

    public func contains(_ messageID: String) async throws -> Bool {
        try await database.first("SELECT 1 FROM warren_processed_messages WHERE message_id = \(messageID)") != nil
    }

    public func insert(_ messageID: String) async throws {
        _ = try await database.transaction { connection in try await Self.record(messageID, on: connection, logger: database.logger) }
    }
}
