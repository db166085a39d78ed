import Foundation
import Logging
import Warren
import WarrenPostgres
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
        Both act on the service's database: DATABASE_URL (PostgreSQL) when set, else DATABASE_PATH, or
        DATA_DIR/users.sqlite (DATA_DIR defaults to data).
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
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            return await onPostgres(url: url, role: role, email: email)
        }
        // A mistyped DATA_DIR must not create an empty database and report "no such account".
        let path = ServiceDatabase.path(service: "users", environment: environment)
        guard FileManager.default.fileExists(atPath: path) else {
            return fail(1, "no user database at \(path): set DATABASE_PATH or DATA_DIR as the service has them")
        }
        do {
            let database = try ServiceDatabase.open(service: "users", environment: environment, migrations: SQLiteUserStore.migrations)
            return report(try await SQLiteUserStore(database: database).setRole(role, email: email), role: role, email: email)
        } catch {
            return fail(1, "cannot change the role in \(path): \(error)")
        }
    }

    /// The same on the service's PostgreSQL database, its pool running only for the command.
    private static func onPostgres(url: String, role: User.Role, email: String) async -> Int32 {
        var logger = Logger(label: "user-service")
        logger.logLevel = .warning
        let database: PostgresServiceDatabase
        do {
            database = try await PostgresServiceDatabase.open(url: url, migrations: PostgresUserStore.migrations, maximumConnections: 1, logger: logger)
        } catch {
            return fail(1, error.description)
        }
        return await withDiscardingTaskGroup { group in
            group.addTask { await database.run() }
            defer { group.cancelAll() }
            do {
                return report(try await PostgresUserStore(database: database).setRole(role, email: email), role: role, email: email)
            } catch {
                return fail(1, "cannot change the role in \(database.url): \(PostgresServiceDatabase.describe(error))")
            }
        }
    }

    private static func report(_ user: User?, role: User.Role, email: String) -> Int32 {
        guard let user else {
            return fail(1, "no account has the email \(email) (any case): register it first (POST /users), then run this again")
        }
        print("\(user.email) (\(user.id)) is now \(user.role == .admin ? "an admin" : "a plain user"); it takes effect with the next token")
        return 0
    }

    private static func fail(_ status: Int32, _ message: String) -> Int32 {
        FileHandle.standardError.write(Data("user-service: \(message)\n".utf8))
        return status
    }
}
