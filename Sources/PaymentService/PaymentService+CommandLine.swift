import Warren

extension PaymentService {
    static let httpPort = 8093

    /// `payment-service --help`.
    static let commandLine = ServiceCommandLine(
        binary: "payment-service",
        summary: "the payment service: charges every new order (simulated), reports the outcome, and refunds (or never charges) a cancelled order.",
        serves: [
            "queue \(QueueName.rpc("payments")): payments.get",
            "queue \(QueueName.events("payments")): order.created, order.cancelled (retried through \(QueueName.events("payments")).retry.<delay>ms, parked in \(QueueName.eventsDeadLetter("payments")))",
            ServiceCommandLine.httpLine(port: httpPort),
            "events published to warren.events: payment.succeeded, payment.failed, payment.cancelled, payment.refunded",
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + ServiceCommandLine.storageVariables(service: "payments") + [
            .init("PAYMENT_LIMIT_CENTS", "100000", "orders with a total above it are declined")
        ])
}
