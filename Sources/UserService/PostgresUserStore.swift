import Foundation
import Logging
import PostgresNIO
import Warren
import WarrenPostgres
import WarrenSQLite

/// The users in a PostgreSQL database (`DATABASE_URL`) that several instances share: the
/// unique email key is the arbiter across instances, and every read sees every committed write.
struct PostgresUserStore: UserStore {
    let database: PostgresServiceDatabase

    static let migrations: [PostgresServiceDatabase.Migration] = [
        .init("users", [
            """
            CREATE TABLE users (
                position bigserial PRIMARY KEY,
                id text NOT NULL UNIQUE,
                name text NOT NULL,
                email text NOT NULL,
                email_key text NOT NULL CONSTRAINT users_email_key_unique UNIQUE,
                role text NOT NULL,
                password_hash text NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )
            """
        ])
    ]

    private static let columns = "id, name, email, role, created_at, password_hash, position"
    private var logger: Logger { database.logger }

    func create(_ user: User, passwordHash: String, cause: Envelope, command: Command?) async throws -> User {
        try await write { connection in
            try await PostgresCommandInbox.record(command, reply: user, on: connection, logger: logger)
            try await connection.query(
                """
                INSERT INTO users (id, name, email, email_key, role, password_hash, created_at, updated_at)
                VALUES (\(user.id), \(user.name), \(user.email), \(user.email.lowercased()), \(user.role.rawValue), \(passwordHash),
                        \(user.createdAt), \(user.createdAt))
                """, logger: logger)
            try await PostgresOutbox.enqueue(connection, type: "user.registered", payload: user, aggregateID: user.id, causedBy: cause, logger: logger)
            return user
        }
    }

    func user(id: String) async throws -> User? {
        try await database.first("SELECT id, name, email, role, created_at FROM users WHERE id = \(id)").map { try Self.user($0) }
    }

    func credentials(email: String) async throws -> (user: User, passwordHash: String)? {
        guard let row = try await database.first("SELECT \(unescaped: Self.columns) FROM users WHERE email_key = \(email.lowercased())") else {
            return nil
        }
        return (try Self.user(row), try row.makeRandomAccess()[5].decode(String.self))
    }

    func list(after position: Int64?, limit: Int) async throws -> Page<User> {
        var users: [User] = []
        var positions: [Int64] = []
        let rows = try await database.query(
            "SELECT \(unescaped: Self.columns) FROM users WHERE position > \(position ?? 0) ORDER BY position LIMIT \(limit + 1)")
        for try await row in rows {
            users.append(try Self.user(row))
            positions.append(try row.makeRandomAccess()[6].decode(Int64.self))
        }
        let more = users.count > limit
        return Page("users", items: Array(users.prefix(limit)), next: more ? positions[limit - 1] : nil)
    }

    func update(id: String, name: String?, email: String?, cause: Envelope, command: Command?) async throws -> User? {
        try await write { connection in
            var found: User?
            for try await row in try await connection.query(
                "SELECT id, name, email, role, created_at FROM users WHERE id = \(id) FOR UPDATE", logger: logger)
            {
                found = try Self.user(row)
            }
            guard var user = found else { return nil }
            user.name = name ?? user.name
            user.email = email ?? user.email
            try await connection.query(
                "UPDATE users SET name = \(user.name), email = \(user.email), email_key = \(user.email.lowercased()), updated_at = \(Date()) WHERE id = \(id)",
                logger: logger)
            try await PostgresOutbox.enqueue(connection, type: "user.updated", payload: user, aggregateID: id, causedBy: cause, logger: logger)
            try await PostgresCommandInbox.record(command, reply: user, on: connection, logger: logger)
            return user
        }
    }

    func delete(id: String, cause: Envelope, command: Command?) async throws -> Bool {
        try await write { connection in
            var deleted = 0
            for try await _ in try await connection.query("DELETE FROM users WHERE id = \(id) RETURNING 1", logger: logger) { deleted += 1 }
            guard deleted > 0 else { return false }
            try await PostgresOutbox.enqueue(connection, type: "user.deleted", payload: UserID(id: id), aggregateID: id, causedBy: cause, logger: logger)
            try await PostgresCommandInbox.record(command, reply: Deleted(id: id), on: connection, logger: logger)
            return true
        }
    }

    func setRole(_ role: User.Role, email: String) async throws -> User? {
        try await database.transaction { connection in
            var found: User?
            for try await row in try await connection.query(
                "SELECT id, name, email, role, created_at FROM users WHERE email_key = \(email.lowercased()) FOR UPDATE", logger: logger)
            {
                found = try Self.user(row)
            }
            guard var user = found else { return nil }
            guard user.role != role else { return user }
            user.role = role
            try await connection.query("UPDATE users SET role = \(role.rawValue), updated_at = \(Date()) WHERE id = \(user.id)", logger: logger)
            try await PostgresOutbox.enqueue(connection, type: "user.updated", payload: user, aggregateID: user.id, logger: logger)
            return user
        }
    }

    /// A transaction whose unique-email violation becomes the `conflict` the caller can act on.
    private func write<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        do {
            return try await database.transaction(body)
        } catch where PostgresServiceDatabase.isUniqueViolation(error, constraint: "users_email_key_unique") {
            throw ServiceError.conflict("a user with this email already exists")
        }
    }

    /// A user from a row whose first columns are id, name, email, role, created_at.
    private static func user(_ row: PostgresRow) throws -> User {
        let columns = row.makeRandomAccess()
        return User(
            id: try columns[0].decode(String.self), name: try columns[1].decode(String.self), email: try columns[2].decode(String.self),
            role: User.Role(rawValue: try columns[3].decode(String.self)) ?? .user, createdAt: try columns[4].decode(Date.self))
    }
}
