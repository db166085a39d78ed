public import Foundation

/// A message handed to a consumer or returned by `basic.get`.
public struct AMQPDelivery: Sendable {
    /// Where an acknowledgement must go: the channel, and the epoch it had when the message came.
    struct Acknowledger: Sendable {
        let channel: ChannelHandle
        let epoch: UInt64
    }

    public let body: Data
    public let properties: AMQPProperties
    public let exchange: String
    public let routingKey: String
    public let deliveryTag: UInt64
    /// Set when the broker delivered this message before without an ack (e.g. a consumer died).
    public let redelivered: Bool
    public let consumerTag: String?
    /// For `basic.get`: how many messages remained in the queue.
    public let messageCount: UInt32?
    let acknowledger: Acknowledger?

    init(
        body: Data, properties: AMQPProperties, exchange: String, routingKey: String, deliveryTag: UInt64,
        redelivered: Bool, consumerTag: String?, acknowledger: Acknowledger?, messageCount: UInt32? = nil
    ) {
        self.body = body
        self.properties = properties
        self.exchange = exchange
        self.routingKey = routingKey
        self.deliveryTag = deliveryTag
        self.redelivered = redelivered
        self.consumerTag = consumerTag
        self.acknowledger = acknowledger
        self.messageCount = messageCount
    }

    /// Tells the broker the message is handled. Does not wait for the wire: acks have no reply.
    /// Throws `staleDelivery` when the channel closed or reconnected since the message came,
    /// because the tag would then name another message; the broker redelivers this one.
    public func ack(multiple: Bool = false) throws {
        try acknowledge(.ack(multiple: multiple))
    }

    /// Hands the message back: requeued for another attempt, or dead-lettered when `requeue` is false.
    public func nack(requeue: Bool = true, multiple: Bool = false) throws {
        try acknowledge(.nack(multiple: multiple, requeue: requeue))
    }

    /// Like `nack` for one message; dead-letters by default, as for a message that can never succeed.
    public func reject(requeue: Bool = false) throws {
        try acknowledge(.reject(requeue: requeue))
    }

    private func acknowledge(_ acknowledgement: IOLoop.Acknowledgement) throws {
        guard let acknowledger else {
            throw AMQPError.protocolError("delivery \(deliveryTag) came from a no-ack consumer: there is nothing to acknowledge")
        }
        let channel = acknowledger.channel
        let epoch = acknowledger.epoch
        let tag = deliveryTag
        guard channel.epoch == epoch else { throw AMQPError.staleDelivery(deliveryTag: tag) }
        channel.jobs.submit(
            Job(run: { loop in loop.acknowledge(channel, epoch: epoch, deliveryTag: tag, acknowledgement) }, fail: { _ in }, onlyWrites: true))
    }
}
