import Warren

extension PaymentService {
    static let httpPort = 8093

    /// `payment-service --help`.
    static let commandLine = ServiceCommandLine(
        binary: "payment-service",
        summary: "the payment service: charges every new order (simulated) and reports the outcome.",
        serves: [
            "queue payments.rpc: payments.get",
            "queue payments.events: order.created (retried through payments.events.retry.<delay>ms, parked in payments.events.dlq)",
            ServiceCommandLine.httpLine(port: httpPort),
            "events published to warren.events: payment.succeeded, payment.failed",
        ],
        variables: ServiceCommandLine.hostVariables(port: httpPort) + ServiceCommandLine.storageVariables(service: "payments") + [
            .init("PAYMENT_LIMIT_CENTS", "100000", "orders with a total above it are declined")
        ])
}
