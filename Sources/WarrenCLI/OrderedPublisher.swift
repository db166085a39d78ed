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
/// sends in the order of the calls. Confirms are collected on the I/O thread; before each
/// publish the task takes those already there without waiting, and once the window is full it
/// sleeps until a quarter of it is confirmed. A wake-up per confirm (a stream element each) cost
/// more than the publish itself.
struct OrderedPublisher {
    enum Outcome: Sendable {
        case confirmed
        /// A `mandatory` message no queue was bound for; the broker dropped it.
        case unrouted(routingKey: String)
    }

    let channel: AMQPChannel
    let window: Int

    /// Publishes every message of `messages`; `progress` sees each outcome, in confirm order, on
    /// the calling task, before the next publish (or at the end). A message's `onConfirmed` runs
    /// as soon as its confirm arrives, so that acks flow while the source waits for more. Stops
    /// at the first failure (nack, lost connection) and throws it: the messages after it may or
    /// may not have been published, those before it were confirmed.
    func publish<Messages: AsyncSequence>(
        _ messages: Messages, progress: (Outcome) -> Void
    ) async throws where Messages.Element == OutgoingMessage {
        let confirms = ConfirmInbox()
        var inFlight = 0
        var ready: [Result<Void, any Error>] = []

        func settle(_ results: [Result<Void, any Error>]) throws {
            for result in results {
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
            confirms.takeReady(swappingWith: &ready)
            try settle(ready)
            ready.removeAll(keepingCapacity: true)
            if inFlight >= window { try settle(await confirms.take(atLeast: min(batch, inFlight))) }
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
        while inFlight > 0 { try settle(await confirms.take(atLeast: inFlight)) }
    }
}

/// Outcomes of confirmed publishes, added on the I/O thread and taken by the publishing task.
/// One task takes at a time.
///
/// Hand-written rather than swift-async-algorithms' `AsyncChannel`: a channel hands over one
/// element per wake-up, and the replay benchmark (README, "Measured (release build, 100,000
/// events ... `--to`)") showed a wake-up per confirm costing more than the publish; this inbox
/// wakes the publisher once per quarter window and lets it take the rest without waiting.
private final class ConfirmInbox: Sendable {
    private struct State {
        var results: [Result<Void, any Error>] = []
        var waiter: (count: Int, continuation: CheckedContinuation<[Result<Void, any Error>], Never>)?
    }

    private let state = Mutex(State())

    func add(_ result: Result<Void, any Error>) {
        let ready = state.withLock { state -> (CheckedContinuation<[Result<Void, any Error>], Never>, [Result<Void, any Error>])? in
            state.results.append(result)
            // A failure (a nack, a lost connection; also a return, which is only an outcome)
            // is handed over without waiting for the rest: a failure ends the publishing.
            guard let waiter = state.waiter, state.results.count >= waiter.count || Self.isFailure(result) else { return nil }
            state.waiter = nil
            return (waiter.continuation, Self.takeAll(&state.results))
        }
        if let (continuation, results) = ready { continuation.resume(returning: results) }
    }

    /// The outcomes already here, swapped into `buffer` (which must be empty), without waiting:
    /// no allocation when both arrays have room.
    func takeReady(swappingWith buffer: inout [Result<Void, any Error>]) {
        state.withLock { state in swap(&state.results, &buffer) }
    }

    /// Every outcome so far, once there are at least `count` (or one is a failure).
    func take(atLeast count: Int) async -> [Result<Void, any Error>] {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [Result<Void, any Error>]? in
                guard state.results.count >= count || state.results.contains(where: Self.isFailure) else {
                    state.waiter = (count, continuation)
                    return nil
                }
                return Self.takeAll(&state.results)
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private static func isFailure(_ result: Result<Void, any Error>) -> Bool {
        if case .failure = result { true } else { false }
    }

    private static func takeAll(_ results: inout [Result<Void, any Error>]) -> [Result<Void, any Error>] {
        defer { results = [] }
        return results
    }
}
