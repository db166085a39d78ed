/// A consumer's deliveries. Iterate it from one task.
public struct AMQPConsumer: AsyncSequence, Sendable {
    public typealias Element = AMQPDelivery

    let stream: AsyncThrowingStream<AMQPDelivery, any Error>
    /// The consumer tag, kept across reconnects.
    public let tag: String
    let channel: ChannelHandle

    public func makeAsyncIterator() -> AsyncThrowingStream<AMQPDelivery, any Error>.AsyncIterator {
        stream.makeAsyncIterator()
    }

    /// Stops deliveries; the sequence then finishes. Deliveries already on the wire are requeued.
    public func cancel() async {
        await AMQPChannel(handle: channel).cancelConsumer(tag: tag)
    }
}

/// What a consumer's handler is told: a message; that the connection dropped and the consumer
/// will be restored once it is back (unacked deliveries will come again, replies to a direct
/// reply-to address never will); or that the consumer ended (nil when this process cancelled it
/// or closed the channel, the broker's reason otherwise).
public enum AMQPConsumerEvent: Sendable {
    case delivery(AMQPDelivery)
    case interrupted(AMQPError)
    case ended(AMQPError?)
}
