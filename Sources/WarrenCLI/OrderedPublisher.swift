import Foundation
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
/// sends in the order of the calls. Confirms come back through a stream, without a task per
/// message: a task each (with its hops between threads) cost more than the publish itself.
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
        let (confirms, sink) = AsyncStream<Result<Void, any Error>>.makeStream()
        defer { sink.finish() }
        var pending = confirms.makeAsyncIterator()
        var inFlight = 0

        func settleOne() async throws {
            guard let result = await pending.next() else { throw AMQPError.closed }
            inFlight -= 1
            do {
                try result.get()
                progress(.confirmed)
            } catch AMQPError.returned(_, let routingKey, _, _) {
                progress(.unrouted(routingKey: routingKey))
            }
        }

        for try await message in messages {
            while inFlight >= window { try await settleOne() }
            let onConfirmed = message.onConfirmed
            try channel.publish(
                message.body, exchange: message.exchange, routingKey: message.routingKey, mandatory: message.mandatory,
                properties: message.properties
            ) { result in
                // On the I/O thread: `onConfirmed` only hands work on (an ack is a queued job).
                sink.yield(result.flatMap { _ in Result { try onConfirmed?() } })
            }
            inFlight += 1
        }
        while inFlight > 0 { try await settleOne() }
    }
}
