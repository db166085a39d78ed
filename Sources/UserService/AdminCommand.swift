import Foundation
import GRDB
import Warren
import WarrenSQLite

/// `user-service grant-admin <email>` / `revoke-admin <email>`: the operator's way to make
/// (or unmake) an admin, run against the service's own database (`DATABASE_PATH` or
/// `DATA_DIR`, as the service reads them), with or without the service running.
///
/// Why not a registration rule: whoever registers an address first would get the role without
/// proving anything, on a fresh deployment or after the admin changed address. Running this
/// needs access to the deployment's database, which is the proof. The change and its
/// `user.updated` event commit together (outbox); the running service publishes the event.
/// The new role is in the tokens the user gets from then on (`POST /auth/token` again).
enum AdminCommand {
    static let usage = """
        usage: user-service                      serve users.rpc (the service)
               user-service grant-admin <email>  give the account with this email the admin role
               user-service revoke-admin <email> make it a plain user again
        Both act on the service's database: DATABASE_PATH, or DATA_DIR/users.sqlite (DATA_DIR defaults to data).
        """

    /// Runs the command and returns the exit status: 0 done, 1 failed (no such account, the
    /// database cannot be opened), 2 a usage error.
    static func run(_ arguments: [String], environment: [String: String]) async -> Int32 {
        // `grant-admin --help` asks how to use it; it names no account.
        if arguments.contains("--help") || arguments.contains("-h") {
            print(usage)
            return 0
        }
        let role: User.Role
        switch arguments.first {
        case "grant-admin": role = .admin
        case "revoke-admin": role = .user
        case "-h", "--help", "help":
            print(usage)
            return 0
        default:
            return fail(2, "unknown command '\(arguments.joined(separator: " "))'\n\(usage)")
        }
        guard arguments.count == 2 else { return fail(2, "\(arguments[0]) takes exactly one email address\n\(usage)") }
        let email = arguments[1]
        do throws(ServiceError) {
            try Check.email(email, "email")
        } catch {
            return fail(2, "'\(email)' is not an email address")
        }
        // A mistyped DATA_DIR must not create an empty database and report "no such account".
        let path = ServiceDatabase.path(service: "users", environment: environment)
        guard FileManager.default.fileExists(atPath: path) else {
            return fail(1, "no user database at \(path): set DATABASE_PATH or DATA_DIR as the service has them")
        }
        do {
            let database = try ServiceDatabase.open(service: "users", environment: environment, migrations: SQLiteUserStore.migrations)
            guard let user = try await setRole(role, email: email, database: database) else {
                return fail(1, "no account has the email \(email) (any case): register it first (POST /users), then run this again")
            }
            print("\(user.email) (\(user.id)) is now \(user.role == .admin ? "an admin" : "a plain user"); it takes effect with the next token")
            return 0
        } catch {
            return fail(1, "cannot change the role in \(path): \(error)")
        }
    }

    /// Sets the role of the account with `email` (any case) and records `user.updated`; nil when
    /// there is no such account. Setting the role it already has changes nothing and sends nothing.
    static func setRole(_ role: User.Role, email: String, database: DatabasePool) async throws -> User? {
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

    private static func fail(_ status: Int32, _ message: String) -> Int32 {
        FileHandle.standardError.write(Data("user-service: \(message)\n".utf8))
        return status
    }
}
