public import Logging
public import ServiceLifecycle
public import WarrenAMQP

/// Consumes one queue with a `ConsumerStrategy`, as a `Service`: opens the consuming channel,
/// lets the strategy declare its topology and open its side channels, sets the prefetch and
/// starts the consumer; hands each delivery (or batch) to the strategy; and on graceful
/// shutdown cancels the consumer, so that the broker sends no more, lets what was delivered be
/// handled (each: at most the drain timeout) and closes the channels. When the broker cancels
/// the consumer (its queue was deleted) it starts again after a pause, declaring the queue
/// anew. `/health` reads its state from `health` (ConsumerHealth).
public struct ConsumerService<Strategy: ConsumerStrategy>: Service {
    public let strategy: Strategy
    private let connection: AMQPConnection
    private let health: ConsumerHealth
    private let logger: Logger

    public init(connection: AMQPConnection, strategy: Strategy, health: ConsumerHealth = .process, logger: Logger) {
        self.connection = connection
        self.strategy = strategy
        self.health = health
        self.logger = logger
    }

    public func run() async throws {
        try await Self.serveUntilShutdown(queue: strategy.queue, logger: logger, health: health) { tracker in
            try await consume(tracker: tracker)
        }
    }

    /// One run of the consumer, from opening its channels to closing them.
    private func consume(tracker: ConsumerHealth.Tracker) async throws {
        let channels = try await ConsumerChannels(connection: connection)
        do {
            let session = try await strategy.open(channels)
            try await channels.consuming.setPrefetch(strategy.prefetch)
            switch strategy.delivery {
            case .each(let concurrency, let drainTimeout, let executor):
                let deliveries = try await channels.consuming.consume(queue: strategy.queue)
                strategy.consuming(session)
                try await withGracefulShutdownHandler {
                    // The loop and, inheriting it, each handler (but those of large deliveries).
                    try await withTaskExecutorPreference(executor == .ioThread ? connection.executor : nil) {
                        try await Self.runHandlers(
                            for: deliveries, concurrency: concurrency, drainTimeout: drainTimeout, offloadsLargeBodies: executor == .ioThread,
                            logger: logger
                        ) { delivery in
                            await strategy.handle(delivery, in: session)
                        }
                    }
                } onGracefulShutdown: {
                    // Stop the broker sending more; what was already delivered is still handled.
                    Task { await deliveries.cancel() }
                }
            case .batches(let limit):
                // Deliveries are only appended on the I/O thread; this task takes them in batches.
                let inbox = DeliveryInbox()
                let tag = try await channels.consuming.consume(queue: strategy.queue, onIOThread: inbox.receive)
                tracker.consuming()
                strategy.consuming(session)
                try await withGracefulShutdownHandler {
                    while let batch = try await inbox.next(upTo: max(1, limit)) {
                        tracker.received(batch.count)
                        await strategy.handle(batch: batch, in: session)
                        tracker.finished(batch.count)
                    }
                } onGracefulShutdown: {
                    Task { await channels.consuming.cancelConsumer(tag: tag) }
                }
            }
        } catch {
            await channels.closeAll()
            throw error
        }
        await channels.closeAll()
    }
}
