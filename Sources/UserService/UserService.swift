import Foundation
import Logging
import Warren
import WarrenSQLite

/// The user service (queue `users.rpc`): accounts with salted bcrypt password hashes in the
/// service's own SQLite database, and `user.registered` / `user.updated` / `user.deleted`
/// events through the transactional outbox.
///
/// Environment (besides the service host's): `DATABASE_PATH` or `DATA_DIR`, `BCRYPT_COST`
/// (12), `ADMIN_EMAILS` (comma-separated addresses that get the admin role when they register).
@main
struct UserService {
    static func main() async throws {
        try await ServiceHost.run(name: "users", defaultHTTPPort: 8091) { resources in
            let environment = resources.environment
            let database = try ServiceDatabase.open(service: "users", environment: environment, migrations: SQLiteUserStore.migrations)
            let relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
            let admins = Set((environment["ADMIN_EMAILS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
            let passwords = Passwords(cost: UInt8(environment["BCRYPT_COST"] ?? "") ?? 12)
            let handlers = UserHandlers(store: SQLiteUserStore(database: database), passwords: passwords, admins: admins, relay: relay)
            let inbox = SQLiteCommandInbox(database: database, logger: resources.logger)
            return ServiceDefinition(
                handlers: handlers.all, services: ServiceDatabase.relays([relay], environment: environment, logger: resources.logger) + [inbox],
                inbox: inbox)
        }
    }
}

struct UserHandlers {
    let store: any UserStore
    let passwords: Passwords
    let admins: Set<String>
    let relay: OutboxRelay

    var all: RPCHandlers {
        var handlers = RPCHandlers()
        handlers.onCommand("users.create", CreateUser.self) { request, context in
            let user = User(
                id: UUID().uuidString.lowercased(), name: request.name, email: request.email,
                role: admins.contains(request.email.lowercased()) ? .admin : .user, createdAt: Date())
            let created = try await store.create(
                user, passwordHash: await passwords.hash(request.password), cause: context.envelope, command: context.command)
            relay.wake()
            context.logger.info("user registered", metadata: ["user_id": "\(created.id)", "role": "\(created.role.rawValue)"])
            return created
        }
        handlers.on("users.get", UserID.self) { request, _ in
            try await existing(store.user(id: request.id), request.id)
        }
        handlers.on("users.list", ListUsers.self) { request, _ in
            try await store.list(after: request.cursor.map { try PageCursor.position($0) }, limit: request.limit ?? 20)
        }
        handlers.onCommand("users.update", UpdateUser.self) { request, context in
            let user = try await existing(
                store.update(id: request.id, name: request.name, email: request.email, cause: context.envelope, command: context.command), request.id)
            relay.wake()
            return user
        }
        handlers.onCommand("users.delete", UserID.self) { request, context in
            guard try await store.delete(id: request.id, cause: context.envelope, command: context.command) else { throw ServiceError.notFound("no user \(request.id)") }
            relay.wake()
            context.logger.info("user deleted", metadata: ["user_id": "\(request.id)"])
            return Deleted(id: request.id)
        }
        handlers.on("users.authenticate", Credentials.self) { request, context in
            // The same work and the same answer whether the email is unknown or the password wrong.
            let account = try await store.credentials(email: request.email)
            guard await passwords.verify(request.password, hash: account?.passwordHash), let user = account?.user else {
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
