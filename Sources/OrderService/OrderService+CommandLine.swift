import Warren

extension OrderService {
    static let httpPort = 8092

    /// `order-service --help`.
    static let commandLine = ServiceCommandLine(
        binary: "order-service",
        summary: "the order service: places orders (checking the user with users.get) and settles them from payment events.",
        serves: [
            "queue \(QueueName.rpc("orders")): orders.create, orders.get, orders.list, orders.cancel (failed commands parked in \(QueueName.rpcDeadLetter("orders")))",
            "queue \(QueueName.events("orders")): payment.succeeded, payment.failed (retried through \(QueueName.events("orders")).retry.<delay>ms, parked in \(QueueName.eventsDeadLetter("orders")))",
            ServiceCommandLine.httpLine(port: httpPort),
            "events published to warren.events: order.created, order.confirmed, order.cancelled",
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + ServiceCommandLine.storageVariables(service: "orders"))
}
