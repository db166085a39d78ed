import ArgumentParser
import Foundation
import Synchronization
import Warren
import WarrenAMQP
import WarrenContract

/// A dead-letter queue, `<service>.events.dlq` or `<service>.rpc.dlq`, and the queue its
/// messages came from (`<service>.events`, `<service>.rpc`).
struct DeadLetterQueue: Sendable {
    let name: String

    static func isDeadLetterQueue(_ name: String) -> Bool {
        QueueName(parsing: name)?.isDeadLetter ?? false
    }

    /// The queue the messages came from; `name` itself if it is not a dead-letter queue (never
    /// made so: `existing(for:verb:on:)` builds only dead-letter queues).
    var target: String { QueueName(parsing: name)?.deadLetterSource?.name ?? name }

    var service: String { QueueName(parsing: name)?.service ?? name }

    /// A usage error (exit 2) for an argument that can name no dead-letter queue: empty, a
    /// name without its service (`.dlq`, `.events.dlq`), or a retry queue (its messages, once
    /// given up on, are in `<service>.events.dlq`, which the message names).
    static func checkArgument(_ argument: String) throws {
        guard !argument.isEmpty, !argument.hasPrefix(".") else {
            throw ValidationError(
                "\(Terminal.quoted(argument)) names no service: give a service (payments) or one of its dead-letter queues (payments.events.dlq)")
        }
        if let queue = QueueName(parsing: argument), case .eventsRetry = queue.kind {
            throw ValidationError(
                "\(Terminal.quoted(argument)) is a retry queue, which has no dead-letter queue of its own: the events it gives up on go to \(Terminal.quoted(QueueName.eventsDeadLetter(queue.service).name))")
        }
    }

    /// The dead-letter queues an argument names: a dead-letter queue itself; the one of a
    /// service queue (`payments.rpc` → `payments.rpc.dlq`), with a line that says so; else both
    /// of a service's. The line is `verb` (`showing`) followed by what was taken. A name that
    /// ends in `.dlq` is a dead-letter queue's own, taken exactly as typed, never extended
    /// (`users.rpc.dlq.dlq` is not the service of `users.rpc.dlq.dlq.rpc.dlq`).
    static func candidates(for argument: String, verb: String) -> (names: [String], note: String?) {
        // Every dead-letter queue's name ends so, Warren's and any other.
        if argument.hasSuffix(".dlq") { return ([argument], nil) }
        if let deadLetters = QueueName(parsing: argument)?.deadLetterQueue {
            let note = "\(verb) \(Terminal.quoted(deadLetters.name)), the dead-letter queue of \(Terminal.quoted(argument))"
            return ([deadLetters.name], note)
        }
        return ([QueueName.eventsDeadLetter(argument).name, QueueName.rpcDeadLetter(argument).name], nil)
    }

    /// The dead-letter queues a command argument names (`candidates(for:verb:)`) that exist.
    static func existing(for argument: String, verb: String, on connection: AMQPConnection) async throws -> [DeadLetterQueue] {
        let (candidates, note) = candidates(for: argument, verb: verb)
        if let note { Terminal.note(note) }
        let channel = try await connection.openChannel()
        var found: [DeadLetterQueue] = []
        for name in candidates {
            do {
                _ = try await channel.inspectQueue(name)
                found.append(DeadLetterQueue(name: name))
            } catch AMQPError.channelClosed(404, _) {
                continue  // the channel reopens on its next use
            }
        }
        await channel.close()
        guard !found.isEmpty else {
            throw CLIFailure(
                .failed, "there is no dead-letter queue \(candidates.map { Terminal.quoted($0) }.joined(separator: " or ")): `warren dlq list` shows those that exist")
        }
        return found
    }

    /// The oldest `limit` messages and the queue's depth, leaving the queue as it was: the
    /// messages are received unacknowledged and go back to their places when the channel closes.
    func peek(_ limit: Int, on connection: AMQPConnection) async throws -> ([AMQPDelivery], Int) {
        let channel = try await connection.openChannel()
        let total = Int(try await channel.inspectQueue(name).messageCount)
        let wanted = min(limit, total)
        var taken: [AMQPDelivery] = []
        if wanted > 0 {
            try await channel.setPrefetch(UInt16(clamping: wanted))
            let consumer = try await channel.consume(queue: name)
            taken = try await consumer.take(wanted, within: .seconds(10))
        }
        await channel.close()
        return (taken, total)
    }

    /// What a requeue did: how many moved, which of the ids asked for were found, and the
    /// selected messages kept back (by event type) because `target`'s bindings do not route them.
    struct Requeued: Sendable {
        var moved = 0
        var found: Set<String> = []
        var kept: [String: Int] = [:]
    }

    /// Moves the messages present now (or only those whose message id is in `ids`) back to
    /// `target`, each acked here only once the broker confirmed its copy. With `routes`, a
    /// message whose type they do not route stays where it is: putting it into the subscriber's
    /// queue past the exchange would hand it an event it never subscribed to.
    func requeue(ids: Set<String>?, routes: QueueRoutes?, on connection: AMQPConnection) async throws -> Requeued {
        let source = try await connection.openChannel()
        let publisher = try await connection.openChannel()
        do {
            let result = try await requeue(ids: ids, routes: routes, from: source, through: publisher)
            // Closing hands the messages not chosen back to their places; acks sent before stand.
            await source.close()
            await publisher.close()
            return result
        } catch {
            await source.close()
            await publisher.close()
            throw error
        }
    }

    private func requeue(ids: Set<String>?, routes: QueueRoutes?, from source: AMQPChannel, through publisher: AMQPChannel) async throws -> Requeued {
        // A `.dlq` queue outside the convention (`users.dlq`) has no queue its messages came from.
        guard QueueName(parsing: name)?.deadLetterSource != nil else {
            throw CLIFailure(
                .failed,
                "\(Terminal.quoted(name)) is not named <service>.events.dlq or <service>.rpc.dlq, so there is no queue to requeue its messages to; nothing was requeued")
        }
        let present = Int(try await source.inspectQueue(name).messageCount)
        do {
            _ = try await publisher.inspectQueue(target)
        } catch AMQPError.channelClosed(404, _) {
            throw CLIFailure(.failed, "there is no queue \(Terminal.quoted(target)) to requeue to: start the service \(Terminal.quoted(service)) first, it declares its queue")
        }
        guard present > 0 else { return Requeued() }
        try await publisher.enableConfirms()
        // Messages not chosen (by --id, or kept back by the routes) stay unacknowledged until the
        // end, so no prefetch may cap them.
        try await source.setPrefetch(ids == nil && routes == nil ? 500 : 0)
        let consumer = try await source.consume(queue: name)

        let (copies, continuation) = AsyncThrowingStream<OutgoingMessage, any Error>.makeStream()
        let lastSeen = Shared(0)
        let reader = Task { [target] () -> Requeued in
            var seen = 0
            var result = Requeued()
            do {
                for try await delivery in consumer {
                    seen += 1
                    lastSeen.set(seen)
                    let id = delivery.properties.messageID
                    if let ids, !(id.map(ids.contains) ?? false) {
                        // Not asked for: stays.
                    } else {
                        if let id { result.found.insert(id) }
                        // The subscriber's own rule, since it is the subscriber that will take it.
                        let type = EventSubscriber.eventType(of: delivery)
                        if let routes, !(type.map(routes.routes) ?? false) {
                            result.kept[type ?? "(no type)", default: 0] += 1
                        } else {
                            continuation.yield(Self.copy(of: delivery, to: target))
                        }
                    }
                    if seen >= present || (ids.map { result.found.count == $0.count } ?? false) { break }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
            return result
        }
        // If the queue shrinks meanwhile (another consumer, a TTL), fewer messages than counted
        // come: stop once nothing arrived for a while instead of waiting forever.
        let watchdog = Task {
            var previous = -1
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(10))
                let now = lastSeen.value
                if now == previous { await consumer.cancel(); return }
                previous = now
            }
        }
        var moved = 0
        do {
            try await OrderedPublisher(channel: publisher, window: 500).publish(copies) { outcome in
                if case .confirmed = outcome { moved += 1 }
            }
        } catch {
            watchdog.cancel()
            reader.cancel()
            throw error
        }
        watchdog.cancel()
        var result = await reader.value
        result.moved = moved
        await consumer.cancel()
        return result
    }

    /// The copy that goes back: same body and properties, without the verdict of the last try,
    /// so an event gets its retries again.
    private static func copy(of delivery: AMQPDelivery, to target: String) -> OutgoingMessage {
        var properties = delivery.properties
        var headers = properties.headers ?? [:]
        headers[WireHeader.error] = nil
        headers[WireHeader.attempts] = nil
        properties.headers = headers.isEmpty ? nil : headers
        return OutgoingMessage(
            body: delivery.body, exchange: "", routingKey: target, mandatory: true, properties: properties,
            onConfirmed: { try delivery.ack() })
    }
}

extension AMQPConsumer {
    /// The first `count` deliveries, or those that came before `timeout`.
    func take(_ count: Int, within timeout: Duration) async throws -> [AMQPDelivery] {
        let taken = Shared<[AMQPDelivery]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await delivery in self {
                    if taken.update({ $0.append(delivery); return $0.count >= count }) { return }
                }
            }
            group.addTask { try await Task.sleep(for: timeout) }
            try await group.next()
            group.cancelAll()
        }
        return taken.value
    }
}

/// A value that tasks share, behind a lock.
final class Shared<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>

    init(_ value: Value) { storage = Mutex(value) }

    var value: Value { storage.withLock { $0 } }

    func set(_ value: Value) { storage.withLock { $0 = value } }

    func update<Result: Sendable>(_ body: (inout Value) -> Result) -> Result { storage.withLock { body(&$0) } }
}

/// The queue's counts, or nil when it does not exist (any more): the broker answers 404 and
/// closes the channel, which reopens on its next use. Every other failure (access refused, the
/// connection lost) is thrown, so that a listing never leaves a queue out without saying so.
func inspectIfPresent(_ name: String, on channel: AMQPChannel) async throws -> AMQPQueueInfo? {
    do {
        return try await channel.inspectQueue(name)
    } catch AMQPError.channelClosed(404, _) {
        return nil
    }
}
