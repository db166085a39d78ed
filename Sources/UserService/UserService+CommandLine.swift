import Warren

extension UserService {
    static let httpPort = 8091

    /// `user-service --help`: what it serves and reads, and the admin subcommands (AdminCommand).
    static let commandLine = ServiceCommandLine(
        binary: "user-service",
        summary: "the user service: accounts with bcrypt password hashes, user.* events through the outbox.",
        serves: [
            "queue \(QueueName.rpc("users")): users.create, users.get, users.list, users.update, users.delete, users.authenticate (failed commands parked in \(QueueName.rpcDeadLetter("users")))",
            ServiceCommandLine.httpLine(port: httpPort),
            "events published to warren.events: user.registered, user.updated, user.deleted",
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + ServiceCommandLine.storageVariables(service: "users") + [
            .init("BCRYPT_COST", "12", "log2 of bcrypt's rounds, 4 to 31"),
            .init("ADMIN_EMAILS", "none", "no longer read (a warning if set): make admins with grant-admin"),
        ],
        subcommands: [
            .init("grant-admin <email>", "give the account with this email the admin role (on the service's database)"),
            .init("revoke-admin <email>", "make it a plain user again"),
        ])
}
