import Warren

extension PaymentService {
    static let httpPort = 8093

    /// `payment-service --help`.
    static let commandLine = ServiceCommandLine(
        binary: "payment-service",
        summary: "the payment service: charges every new order (simulated) and reports the outcome.",
        serves: [
            "queue \(QueueName.rpc("payments")): payments.get",
            "queue \(QueueName.events("payments")): order.created (retried through \(QueueName.events("payments")).retry.<delay>ms, parked in \(QueueName.eventsDeadLetter("payments")))",
            ServiceCommandLine.httpLine(port: httpPort),
            "events published to warren.events: payment.succeeded, payment.failed",
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + ServiceCommandLine.storageVariables(service: "payments") + [
            .init("PAYMENT_LIMIT_CENTS", "100000", "orders with a total above it are declined")
        ])
}
