public import Logging
public import PostgresNIO
public import ServiceLifecycle
import Warren

/// A service's PostgreSQL database (`DATABASE_URL`): one connection pool (`PostgresClient`)
/// that runs as a `Service` in the service group, the service's migrations applied at start,
/// and transactions whose errors come out as they were thrown (postgres-nio's own
/// `withTransaction` wraps them, which would hide `CommandAlreadyApplied` from the responder).
///
/// Several instances on several hosts share the database: every table keys what must be
/// unique across them (ids, command inbox, processed ids, idempotency keys) with a unique
/// constraint, and every read is of committed rows.
public final class PostgresServiceDatabase: Service, Sendable {
    public let client: PostgresClient
    public let url: PostgresURL
    /// The service's logger at `info` or above: what postgres-nio logs below that (each
    /// protocol message and action at `trace`) may hold the login exchange and bound values.
    public let logger: Logger

    private init(client: PostgresClient, url: PostgresURL, logger: Logger) {
        self.client = client
        self.url = url
        self.logger = logger
    }

    /// A migration: a name, applied once per database, and its statements, run in one
    /// transaction. Statements are fixed SQL, never built from input.
    public struct Migration: Sendable {
        public let name: String
        public let statements: [String]
        public init(_ name: String, _ statements: [String]) {
            self.name = name
            self.statements = statements
        }
    }

    /// Why the database could not be opened, in words an operator can act on. Never holds the
    /// password: postgres-nio's errors are described through their server message and code
    /// only.
    public struct OpenError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Connects to `url`, applies the runtime's tables (outbox, processed ids, command inbox)
    /// and then `migrations`, and returns the database, whose `run()` the service group must
    /// run (first among the service's own services, so that it stops last). Fails with an
    /// `OpenError` when the URL is unusable, the server unreachable, the login refused or a
    /// migration fails.
    public static func open(url text: String, migrations: [Migration], maximumConnections: Int = 20, logger serviceLogger: Logger) async throws(OpenError) -> PostgresServiceDatabase {
        let logger = Self.quieter(serviceLogger)
        let url: PostgresURL
        do {
            url = try PostgresURL(text)
        } catch {
            throw OpenError(description: error.description)
        }
        let database = PostgresServiceDatabase(
            client: PostgresClient(configuration: url.clientConfiguration(maximumConnections: maximumConnections), backgroundLogger: logger),
            url: url, logger: logger)
        do {
            // One connection of its own for the check and the migrations: the service's pool
            // runs only inside the service group, and would retry a refused login for ever.
            try await withDeadline(.seconds(15), url: url) {
                let connection = try await PostgresConnection.connect(configuration: try url.connectionConfiguration(), id: 0, logger: logger)
                do {
                    try await migrate(connection, Self.runtimeMigrations + migrations, logger: logger)
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            }
        } catch let error as OpenError {
            throw error
        } catch {
            throw OpenError(description: "cannot use the database at \(url): \(Self.describe(error))")
        }
        return database
    }

    /// Opens the database of `DATABASE_URL`, with a pool of at most `DATABASE_MAX_CONNECTIONS`
    /// (1 to 1000, default 10: PostgreSQL allows 100 in all by default, shared by every instance
    /// of every service on the server). nil when `DATABASE_URL` is unset or empty (SQLite then).
    public static func open(environment: [String: String], migrations: [Migration], logger: Logger) async throws -> PostgresServiceDatabase? {
        guard let url = environment["DATABASE_URL"], !url.isEmpty else { return nil }
        let maximum = try ServiceHost.number(environment, "DATABASE_MAX_CONNECTIONS", 1...1_000) ?? 10
        let database = try await open(url: url, migrations: migrations, maximumConnections: maximum, logger: logger)
        logger.info("database: PostgreSQL", metadata: ["database": "\(database.url)", "max_connections": "\(maximum)"])
        return database
    }

    /// `logger` at `info` at least (see `logger`).
    private static func quieter(_ logger: Logger) -> Logger {
        var quieter = logger
        if quieter.logLevel < .info { quieter.logLevel = .info }
        return quieter
    }

    public func run() async {
        await client.run()
    }

    /// Runs `body` in one transaction on one connection: committed when it returns, rolled
    /// back when it throws (its error is rethrown as it is).
    public func transaction<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        try await client.withConnection { connection in
            try await Self.transaction(on: connection, logger: logger, body)
        }
    }

    static func transaction<T: Sendable>(on connection: PostgresConnection, logger: Logger, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await connection.query("BEGIN", logger: logger)
        do {
            let value = try await body(connection)
            try await connection.query("COMMIT", logger: logger)
            return value
        } catch {
            // After a failed COMMIT the server has rolled back already; this is then a no-op.
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    /// One statement outside a transaction (a read sees every committed write).
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRowSequence {
        try await client.query(query, logger: logger)
    }

    /// The first row of `query`, or nil.
    public func first(_ query: PostgresQuery) async throws -> PostgresRow? {
        for try await row in try await client.query(query, logger: logger) { return row }
        return nil
    }

    /// True when `error` is a unique-constraint violation (SQLSTATE 23505), optionally of
    /// the named constraint.
    public static func isUniqueViolation(_ error: any Error, constraint: String? = nil) -> Bool {
        guard let error = error as? PSQLError, error.serverInfo?[.sqlState] == "23505" else { return false }
        return constraint == nil || error.serverInfo?[.constraintName] == constraint
    }

    /// postgres-nio's error in words: the server's message when it sent one, else the code and
    /// the underlying cause (refused, timed out). Its own description leaves everything out.
    public static func describe(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return "\(error)" }
        if let message = error.serverInfo?[.message] {
            return message + (error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
        }
        return "\(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
    }

    private static func withDeadline(_ limit: Duration, url: PostgresURL, _ body: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await body()
                return true
            }
            group.addTask {
                try await Task.sleep(for: limit)
                return false
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else {
                throw OpenError(description: "no answer from PostgreSQL at \(url) within \(limit): is it running and reachable?")
            }
        }
    }

    /// Applies what is missing, under an advisory lock so that instances starting together do
    /// not apply a migration twice.
    private static func migrate(_ connection: PostgresConnection, _ migrations: [Migration], logger: Logger) async throws {
        do {
            try await transaction(on: connection, logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(7242)", logger: logger)  // 7242: Warren's migrations
                try await connection.query(
                    "CREATE TABLE IF NOT EXISTS warren_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                    logger: logger)
                var applied = Set<String>()
                for try await name in try await connection.query("SELECT name FROM warren_migrations", logger: logger).decode(String.self) {
                    applied.insert(name)
                }
                for migration in migrations where !applied.contains(migration.name) {
                    for statement in migration.statements {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query("INSERT INTO warren_migrations (name) VALUES (\(migration.name))", logger: logger)
                    logger.info("applied a database migration", metadata: ["migration": "\(migration.name)"])
                }
            }
        }
    }

    /// The runtime's tables, as in the SQLite database: the outbox, processed ids, the command inbox.
    static let runtimeMigrations: [Migration] = [
        Migration("warren_outbox", [
            """
            CREATE TABLE warren_outbox (
                sequence bigserial PRIMARY KEY,
                event_id text NOT NULL UNIQUE,
                type text NOT NULL,
                aggregate_id text,
                correlation_id text NOT NULL,
                causation_id text,
                body bytea NOT NULL,
                created_at timestamptz NOT NULL,
                sent_at timestamptz,
                claimed_until timestamptz,
                failed_at timestamptz,
                failure text
            )
            """,
            "CREATE INDEX warren_outbox_unsent ON warren_outbox (sequence) WHERE sent_at IS NULL AND failed_at IS NULL",
        ]),
        Migration("warren_processed_messages", [
            "CREATE TABLE warren_processed_messages (message_id text PRIMARY KEY, processed_at timestamptz NOT NULL)"
        ]),
        Migration("warren_command_inbox", [
            """
            CREATE TABLE warren_command_inbox (
                message_id text PRIMARY KEY,
                operation text NOT NULL,
                fingerprint text NOT NULL,
                reply bytea NOT NULL,
                created_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX warren_command_inbox_by_age ON warren_command_inbox (created_at)",
        ]),
        // The W3C traceparent of the outbox write's span (Outbox.tracedEnvelope), as in SQLite.
        Migration("warren_outbox_trace_context", ["ALTER TABLE warren_outbox ADD COLUMN traceparent text"]),
    ]
}
