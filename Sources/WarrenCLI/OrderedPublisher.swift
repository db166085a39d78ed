import Dispatch
import Foundation
import WarrenAMQP

/// A message to publish with confirms.
struct OutgoingMessage: Sendable {
    var body: Data
    var exchange: String
    var routingKey: String
    var mandatory: Bool
    var properties: AMQPProperties
    /// Runs once the broker confirmed the message (e.g. ack its dead-letter copy).
    var onConfirmed: (@Sendable () throws -> Void)? = nil
}

/// Publishes with confirms and up to `window` messages awaiting their confirm, yet in the order
/// given: replays must reach a queue in the event store's order, and waiting for each confirm
/// before the next publish caps throughput at one broker round trip per message.
///
/// Order holds because every publish starts on one serial executor, in the order it was added,
/// and `AMQPChannel.publish` hands its frame to the I/O thread's FIFO before it first suspends.
struct OrderedPublisher {
    enum Outcome: Sendable {
        case confirmed
        /// A `mandatory` message no queue was bound for; the broker dropped it.
        case unrouted(routingKey: String)
    }

    let channel: AMQPChannel
    let window: Int

    /// Publishes every message of `messages`; `progress` sees each outcome, in confirm order, on
    /// the calling task. Stops at the first failure (nack, lost connection) and throws it: the
    /// messages after it may or may not have been published, those before it were confirmed.
    func publish<Messages: AsyncSequence>(
        _ messages: Messages, progress: (Outcome) -> Void
    ) async throws where Messages.Element == OutgoingMessage {
        let executor = SerialTaskExecutor()
        let channel = channel
        try await withThrowingTaskGroup(of: Outcome.self) { group in
            var inFlight = 0
            for try await message in messages {
                if inFlight >= window, let outcome = try await group.next() {
                    inFlight -= 1
                    progress(outcome)
                }
                group.addTask(executorPreference: executor) {
                    do {
                        try await channel.publish(
                            message.body, exchange: message.exchange, routingKey: message.routingKey,
                            mandatory: message.mandatory, properties: message.properties)
                    } catch AMQPError.returned(_, let routingKey, _, _) {
                        return .unrouted(routingKey: routingKey)
                    }
                    try message.onConfirmed?()
                    return .confirmed
                }
                inFlight += 1
            }
            while let outcome = try await group.next() {
                progress(outcome)
            }
        }
    }
}

/// Runs tasks one at a time in the order they were enqueued, on a dispatch queue of its own.
final class SerialTaskExecutor: TaskExecutor, @unchecked Sendable {
    // Dispatch queues are thread-safe; the class holds nothing else.
    private let queue = DispatchQueue(label: "warren.cli.publish")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }
}
