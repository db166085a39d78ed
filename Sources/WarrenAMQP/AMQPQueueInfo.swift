/// What `queue.declare` reports: the (possibly server-chosen) name and the queue's depth.
public struct AMQPQueueInfo: Sendable, Equatable {
    public let name: String
    public let messageCount: UInt32
    public let consumerCount: UInt32
}
