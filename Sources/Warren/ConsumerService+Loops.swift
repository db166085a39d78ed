import Logging
import ServiceLifecycle
import WarrenAMQP

extension ConsumerService {
    /// Runs `handle` for each delivery with at most `concurrency` at once, each in a child task
    /// that inherits the caller's executor preference; with `offloadsLargeBodies`, a delivery
    /// whose body is over `HandlerExecutor.largeBodyBytes` is handled on Swift's shared pool
    /// instead. When the sequence ends (graceful shutdown cancelled the consumer), it waits for
    /// the handlers still running, at most `drainTimeout`; handlers still running then are
    /// cancelled, and their messages, unacked, go back to the queue when the channel closes.
    static func runHandlers(
        for deliveries: AMQPConsumer, concurrency: Int, drainTimeout: Duration, offloadsLargeBodies: Bool = false, logger: Logger,
        handle: @escaping @Sendable (AMQPDelivery) async -> Void
    ) async throws {
        // What /health reads: the loop is consuming, and how many deliveries it holds.
        let health = ConsumerHealth.Tracker.current
        health?.consuming()
        try await withThrowingTaskGroup(of: Bool.self) { group in
            var running = 0
            for try await delivery in deliveries {
                if running >= max(1, concurrency) {
                    _ = try await group.next()
                    running -= 1
                }
                health?.received()
                let work: @Sendable () async -> Bool = {
                    await handle(delivery)
                    health?.finished()
                    return true
                }
                if offloadsLargeBodies, delivery.body.count > HandlerExecutor.largeBodyBytes {
                    group.addTask(executorPreference: globalConcurrentExecutor, operation: work)
                } else {
                    // Not `addTask(executorPreference: nil)`: that runs the child on the shared
                    // pool instead of inheriting the preference (seen in release builds).
                    group.addTask(operation: work)
                }
                running += 1
            }
            guard running > 0 else { return }
            logger.info("draining", metadata: ["in_flight_at_most": "\(running)"])
            group.addTask {
                try? await Task.sleep(for: drainTimeout)
                return false
            }
            while running > 0, let finishedHandler = try await group.next() {
                guard finishedHandler else {
                    logger.warning("drain timeout: cancelling handlers; their messages will be redelivered", metadata: ["in_flight": "\(running)"])
                    group.cancelAll()
                    return
                }
                running -= 1
            }
            group.cancelAll()  // the watchdog
        }
    }

    /// Runs `serve` until it returns (graceful shutdown). If the broker cancels the consumer
    /// because someone deleted its queue, `serve` runs again after a pause (declaring the queue
    /// anew) rather than taking the whole service down. The consumer's state is reported to
    /// `health` for `/health`: restarting meanwhile, stopped once `serve` ends; `serve` is handed
    /// the tracker, to report consuming and the deliveries it holds (`runHandlers` does so itself).
    static func serveUntilShutdown(
        queue: String, logger: Logger, health: ConsumerHealth = .process, _ serve: (ConsumerHealth.Tracker) async throws -> Void
    ) async throws {
        let tracker = health.track(queue: queue)
        try await ConsumerHealth.Tracker.$current.withValue(tracker) {
            while true {
                do {
                    try await serve(tracker)
                    tracker.stopped(Task.isShuttingDownGracefully ? "shutting down" : "the consumer ended")
                    return
                } catch AMQPError.consumerCancelled {
                    guard !Task.isCancelled, !Task.isShuttingDownGracefully else {
                        tracker.stopped("shutting down")
                        return
                    }
                    tracker.restarting("the broker cancelled the consumer; declaring the queue again")
                    logger.warning("the broker cancelled the consumer (was the queue deleted?); declaring it again", metadata: ["queue": "\(queue)"])
                    try await Task.sleep(for: .seconds(1))
                } catch {
                    tracker.stopped("\(error)")
                    throw error
                }
            }
        }
    }
}
