import Synchronization
public import WarrenAMQP

/// The channels of one run of a consumer: the one it consumes on, and the side channels its
/// strategy opens (replies, copies to retry and dead-letter queues), so that `ConsumerService`
/// closes every one, in the reverse order, however the run ends.
public final class ConsumerChannels: Sendable {
    /// The channel the deliveries arrive on (and are acked on).
    public let consuming: AMQPChannel
    private let connection: AMQPConnection
    private let sideChannels = Mutex<[AMQPChannel]>([])

    init(connection: AMQPConnection) async throws {
        self.connection = connection
        consuming = try await connection.openChannel()
    }

    /// Opens a side channel: a channel the broker may close (a refused reply, a refused copy)
    /// without closing the one the deliveries and their acks travel on.
    public func open() async throws -> AMQPChannel {
        let channel = try await connection.openChannel()
        sideChannels.withLock { $0.append(channel) }
        return channel
    }

    /// Closes the side channels, last opened first, then the consuming channel.
    func closeAll() async {
        for channel in sideChannels.withLock({ $0 }).reversed() { await channel.close() }
        await consuming.close()
    }
}
