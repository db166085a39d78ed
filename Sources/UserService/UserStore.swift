import Foundation
import GRDB
import Warren
import WarrenSQLite

/// What the handlers need of storage. A protocol so that a PostgreSQL store can serve several
/// hosts without touching the handlers; each change writes its event in the same transaction.
protocol UserStore: Sendable {
    /// Throws `conflict` when the email (case-insensitive) is taken. Each change records
    /// `command` (nil for none) with its reply in the command inbox, in the change's transaction,
    /// and throws `CommandAlreadyApplied` if that command committed already.
    func create(_ user: User, passwordHash: String, cause: Envelope, command: Command?) async throws -> User
    func user(id: String) async throws -> User?
    func credentials(email: String) async throws -> (user: User, passwordHash: String)?
    func list(after position: Int64?, limit: Int) async throws -> Page<User>
    /// nil when there is no such user; `conflict` when the new email is taken.
    func update(id: String, name: String?, email: String?, cause: Envelope, command: Command?) async throws -> User?
    /// false when there is no such user.
    func delete(id: String, cause: Envelope, command: Command?) async throws -> Bool
    /// Sets the role of the account with `email` (any case) and records `user.updated`; nil when
    /// there is no such account. Setting the role it already has changes nothing and sends nothing.
    func setRole(_ role: User.Role, email: String) async throws -> User?
}

/// The default store: the service's own SQLite file, with the outbox beside the users.
struct SQLiteUserStore: UserStore {
    let database: DatabasePool
    /// For `users.get`, the service's most frequent request.
    let reader: PointReader

    init(database: DatabasePool) {
        self.database = database
        self.reader = PointReader(database)
    }

    static func migrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("users") { db in
            try db.create(table: "users") { table in
                table.autoIncrementedPrimaryKey("position")
                table.column("id", .text).notNull().unique()
                table.column("name", .text).notNull()
                table.column("email", .text).notNull()
                table.column("email_key", .text).notNull().unique()  // lowercased: one account per address
                table.column("role", .text).notNull()
                table.column("password_hash", .text).notNull()
                table.column("created_at", .datetime).notNull()
                table.column("updated_at", .datetime).notNull()
            }
        }
    }

    func create(_ user: User, passwordHash: String, cause: Envelope, command: Command?) async throws -> User {
        try await write { db in
            try SQLiteCommandInbox.record(command, reply: user, in: db)
            try db.execute(
                sql: """
                    INSERT INTO users (id, name, email, email_key, role, password_hash, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [user.id, user.name, user.email, user.email.lowercased(), user.role.rawValue, passwordHash, user.createdAt, user.createdAt])
            try Outbox.enqueue(db, type: "user.registered", payload: user, aggregateID: user.id, causedBy: cause)
            return user
        }
    }

    func user(id: String) async throws -> User? {
        try await reader.fetchOne("SELECT * FROM users WHERE id = ?", arguments: [id]).map(User.init(row:))
    }

    func credentials(email: String) async throws -> (user: User, passwordHash: String)? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE email_key = ?", arguments: [email.lowercased()])
                .map { (User(row: $0), $0["password_hash"]) }
        }
    }

    func list(after position: Int64?, limit: Int) async throws -> Page<User> {
        try await database.read { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM users WHERE position > ? ORDER BY position LIMIT ?", arguments: [position ?? 0, limit + 1])
            return Page("users", rows: rows, limit: limit, item: User.init(row:))
        }
    }

    func update(id: String, name: String?, email: String?, cause: Envelope, command: Command?) async throws -> User? {
        try await write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]) else { return nil }
            var user = User(row: row)
            user.name = name ?? user.name
            user.email = email ?? user.email
            try db.execute(
                sql: "UPDATE users SET name = ?, email = ?, email_key = ?, updated_at = ? WHERE id = ?",
                arguments: [user.name, user.email, user.email.lowercased(), Date(), id])
            try Outbox.enqueue(db, type: "user.updated", payload: user, aggregateID: id, causedBy: cause)
            try SQLiteCommandInbox.record(command, reply: user, in: db)
            return user
        }
    }

    func delete(id: String, cause: Envelope, command: Command?) async throws -> Bool {
        try await write { db in
            try db.execute(sql: "DELETE FROM users WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { return false }
            try Outbox.enqueue(db, type: "user.deleted", payload: UserID(id: id), aggregateID: id, causedBy: cause)
            try SQLiteCommandInbox.record(command, reply: Deleted(id: id), in: db)
            return true
        }
    }

    func setRole(_ role: User.Role, email: String) async throws -> User? {
        try await database.write { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM users WHERE email_key = ?", arguments: [email.lowercased()]) else {
                return nil
            }
            var user = User(row: row)
            guard user.role != role else { return user }
            user.role = role
            try db.execute(sql: "UPDATE users SET role = ?, updated_at = ? WHERE id = ?", arguments: [role.rawValue, Date(), user.id])
            try Outbox.enqueue(db, type: "user.updated", payload: user, aggregateID: user.id)
            return user
        }
    }

    /// A write whose unique-email violation becomes the `conflict` the caller can act on.
    private func write<T: Sendable>(_ updates: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await database.write(updates)
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw ServiceError.conflict("a user with this email already exists")
        }
    }
}

extension User {
    init(row: Row) {
        self.init(
            id: row["id"], name: row["name"], email: row["email"], role: Role(rawValue: row["role"]) ?? .user,
            createdAt: row["created_at"])
    }
}
