/// A consumer as the I/O thread knows it; kept across reconnects so it can be re-registered.
final class ConsumerState: Sendable {
    let tag: String
    let queue: String
    let noAck: Bool
    let exclusive: Bool
    let arguments: AMQPTable
    let handler: @Sendable (AMQPConsumerEvent) -> Void

    init(tag: String, queue: String, noAck: Bool, exclusive: Bool, arguments: AMQPTable, handler: @escaping @Sendable (AMQPConsumerEvent) -> Void) {
        self.tag = tag
        self.queue = queue
        self.noAck = noAck
        self.exclusive = exclusive
        self.arguments = arguments
        self.handler = handler
    }
}
