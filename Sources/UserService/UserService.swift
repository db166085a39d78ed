import Foundation
import Logging
import ServiceLifecycle
import Warren
import WarrenHost
import WarrenPostgres
import WarrenSQLite

/// The user service (queue `users.rpc`): accounts with salted bcrypt password hashes in the
/// service's own SQLite database, and `user.registered` / `user.updated` / `user.deleted`
/// events through the transactional outbox.
///
/// Registration never grants a role: every account starts as `user`. An operator makes an
/// admin with `user-service grant-admin <email>` against the service's database (the same
/// `DATABASE_PATH` / `DATA_DIR`), which proves access to the deployment rather than to an
/// address (`AdminCommand`).
///
/// Environment (besides the service host's): `DATABASE_URL` (PostgreSQL, for instances that
/// share one database) or else `DATABASE_PATH` / `DATA_DIR` (SQLite), `BCRYPT_COST`
/// (4 to 31, default 12).
@main
struct UserService {
    static func main() async throws {
        switch commandLine.resolve() {
        case .exit(let status): exit(status)
        case .subcommand(let arguments): exit(await AdminCommand.run(arguments, environment: ProcessInfo.processInfo.environment))
        case .serve: break
        }
        let cost: UInt8
        do throws(ServiceError) {
            cost = try Passwords.cost(ProcessInfo.processInfo.environment["BCRYPT_COST"])
        } catch {
            FileHandle.standardError.write(Data("user-service: \(error.message)\n".utf8))
            exit(1)
        }
        exit(await ServiceProcess.run(name: "users", defaultHTTPPort: httpPort) { resources in
            let environment = resources.environment
            if let listed = environment["ADMIN_EMAILS"], !listed.trimmingCharacters(in: .whitespaces).isEmpty {
                resources.logger.warning(
                    "ADMIN_EMAILS is no longer read: registering never grants a role. Make an admin with `user-service grant-admin <email>`")
            }
            let store: any UserStore
            let relay: OutboxRelay
            let inbox: any CommandInbox & Service
            var storage: [any Service] = []
            if let database = try await PostgresServiceDatabase.open(environment: environment, migrations: PostgresUserStore.migrations, logger: resources.logger) {
                store = PostgresUserStore(database: database)
                relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
                inbox = PostgresCommandInbox(database: database, logger: resources.logger)
                storage = [database]  // first, so that it stops after everything that queries it
            } else {
                let database = try ServiceDatabase.open(service: "users", environment: environment, migrations: SQLiteUserStore.migrations)
                store = SQLiteUserStore(database: database)
                relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
                inbox = SQLiteCommandInbox(database: database, logger: resources.logger)
            }
            let handlers = UserHandlers(store: store, passwords: Passwords(cost: cost), relay: relay)
            return ServiceDefinition(
                handlers: handlers.all,
                services: storage + ServiceDatabase.relays([relay], environment: environment, logger: resources.logger) + [inbox],
                inbox: inbox)
        })
    }
}

struct UserHandlers {
    let store: any UserStore
    let passwords: Passwords
    let relay: OutboxRelay

    var all: RPCHandlers {
        var handlers = RPCHandlers()
        handlers.onCommand("users.create", CreateUser.self) { request, context in
            // Never a role from the request or the address: admins are made by an operator.
            let user = User(id: UUID().uuidString.lowercased(), name: request.name, email: request.email, role: .user, createdAt: Date())
            let created = try await store.create(
                user, passwordHash: try await passwords.hash(request.password), cause: context.envelope, command: context.command)
            relay.wake()
            context.logger.info("user registered", metadata: ["user_id": "\(created.id)", "role": "\(created.role.rawValue)"])
            return created
        }
        // Ids in one form (lower case), whatever case the caller wrote them in.
        handlers.on("users.get", UserID.self) { request, _ in
            try await existing(store.user(id: request.canonicalID), request.id)
        }
        handlers.on("users.list", ListUsers.self) { request, _ in
            try await store.list(after: request.cursor.map { try PageCursor.position($0) }, limit: request.limit ?? 20)
        }
        handlers.onCommand("users.update", UpdateUser.self) { request, context in
            let user = try await existing(
                store.update(
                    id: Check.canonicalID(request.id), name: request.name, email: request.email, cause: context.envelope, command: context.command),
                request.id)
            relay.wake()
            return user
        }
        handlers.onCommand("users.delete", UserID.self) { request, context in
            guard try await store.delete(id: request.canonicalID, cause: context.envelope, command: context.command) else {
                throw ServiceError.notFound("no user \(request.id)")
            }
            relay.wake()
            context.logger.info("user deleted", metadata: ["user_id": "\(request.id)"])
            return Deleted(id: request.canonicalID)
        }
        handlers.on("users.authenticate", Credentials.self) { request, context in
            // The same work and the same answer whether the email is unknown or the password wrong.
            let account = try await store.credentials(email: request.email)
            guard try await passwords.verify(request.password, hash: account?.passwordHash), let user = account?.user else {
                context.logger.info("authentication refused")
                throw ServiceError.unauthorized("wrong email or password")
            }
            return user
        }
        return handlers
    }

    private func existing(_ user: User?, _ id: String) throws(ServiceError) -> User {
        guard let user else { throw .notFound("no user \(id)") }
        return user
    }
}
