import Foundation
import Synchronization
import WarrenAMQP

/// A message to publish with confirms.
struct OutgoingMessage: Sendable {
    var body: Data
    var exchange: String
    var routingKey: String
    var mandatory: Bool
    var properties: AMQPProperties
    /// Runs once the broker confirmed the message (e.g. ack its dead-letter copy), on the
    /// connection's I/O thread: it may only hand work on, as an ack does (a queued job).
    var onConfirmed: (@Sendable () throws -> Void)? = nil
}

/// Publishes with confirms and up to `window` messages awaiting their confirm, yet in the order
/// given: replays must reach a queue in the event store's order, and waiting for each confirm
/// before the next publish caps throughput at one broker round trip per message.
///
/// Order holds because one task hands every message to the channel in turn, and the channel
/// sends in the order of the calls. Confirms are collected on the I/O thread and taken in
/// batches: once the window is full the task sleeps until a quarter of it is confirmed, rather
/// than waking once per confirm (a wake-up per message cost more than the publish itself).
struct OrderedPublisher {
    enum Outcome: Sendable {
        case confirmed
        /// A `mandatory` message no queue was bound for; the broker dropped it.
        case unrouted(routingKey: String)
    }

    let channel: AMQPChannel
    let window: Int

    /// Publishes every message of `messages`; `progress` sees each outcome, in confirm order, on
    /// the calling task, once a full window waits (or at the end). A message's `onConfirmed` runs
    /// as soon as its confirm arrives, so that acks flow while the source waits for more. Stops
    /// at the first failure (nack, lost connection) and throws it: the messages after it may or
    /// may not have been published, those before it were confirmed.
    func publish<Messages: AsyncSequence>(
        _ messages: Messages, progress: (Outcome) -> Void
    ) async throws where Messages.Element == OutgoingMessage {
        let confirms = ConfirmInbox()
        var inFlight = 0

        func settle(atLeast count: Int) async throws {
            for result in await confirms.take(atLeast: count) {
                inFlight -= 1
                do {
                    try result.get()
                    progress(.confirmed)
                } catch AMQPError.returned(_, let routingKey, _, _) {
                    progress(.unrouted(routingKey: routingKey))
                }
            }
        }

        let batch = max(1, window / 4)
        for try await message in messages {
            if inFlight >= window { try await settle(atLeast: min(batch, inFlight)) }
            let onConfirmed = message.onConfirmed
            try channel.publish(
                message.body, exchange: message.exchange, routingKey: message.routingKey, mandatory: message.mandatory,
                properties: message.properties
            ) { result in
                // On the I/O thread: `onConfirmed` only hands work on (an ack is a queued job).
                confirms.add(result.flatMap { _ in Result { try onConfirmed?() } })
            }
            inFlight += 1
        }
        while inFlight > 0 { try await settle(atLeast: inFlight) }
    }
}

/// Outcomes of confirmed publishes, added on the I/O thread and taken by the publishing task
/// in batches. One task takes at a time.
private final class ConfirmInbox: Sendable {
    private struct State {
        var results: [Result<Void, any Error>] = []
        var waiter: (count: Int, continuation: CheckedContinuation<[Result<Void, any Error>], Never>)?
    }

    private let state = Mutex(State())

    func add(_ result: Result<Void, any Error>) {
        let ready = state.withLock { state -> (CheckedContinuation<[Result<Void, any Error>], Never>, [Result<Void, any Error>])? in
            state.results.append(result)
            // A failure ends the publishing early: hand it over without waiting for the batch.
            guard let waiter = state.waiter, state.results.count >= waiter.count || (try? result.get()) == nil else { return nil }
            state.waiter = nil
            defer { state.results.removeAll(keepingCapacity: true) }
            return (waiter.continuation, state.results)
        }
        if let (continuation, results) = ready { continuation.resume(returning: results) }
    }

    /// Every outcome so far, once there are at least `count` (or one is a failure).
    func take(atLeast count: Int) async -> [Result<Void, any Error>] {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [Result<Void, any Error>]? in
                let failed = state.results.contains { (try? $0.get()) == nil }
                guard state.results.count >= count || failed else {
                    state.waiter = (count, continuation)
                    return nil
                }
                defer { state.results.removeAll(keepingCapacity: true) }
                return state.results
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
