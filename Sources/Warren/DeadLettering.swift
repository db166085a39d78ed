public import WarrenAMQP

/// The broker's own dead-lettering for a consumer's queue: a message rejected without requeue
/// (`reject(requeue: false)`) goes to `<queue>.dlq` through the broker, which cannot fail the
/// way publishing a copy can (a copy with `x-error` may no longer fit in a frame, the confirm
/// channel may be gone). Warren parks with a copy first, for the reason in `x-error`, and
/// rejects when the copy cannot be made; the broker then adds `x-death` with reason `rejected`.
public enum DeadLettering {
    /// The queue arguments that make the broker dead-letter rejected (or expired) messages of a
    /// queue into `deadLetterQueue`, through the default exchange.
    public static func arguments(to deadLetterQueue: String) -> AMQPTable {
        ["x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(deadLetterQueue)]
    }

    /// Declares `deadLetterQueue`, then `queue` dead-lettering into it (`extraArguments` added).
    /// Throws `QueueArgumentsMismatch` when the broker already has `queue` with other
    /// arguments (one declared by an older Warren, without dead-lettering): RabbitMQ never
    /// changes a queue's arguments, so the operator must delete it first.
    public static func declare(
        _ queue: String, deadLetterQueue: String, extraArguments: AMQPTable = [:], on channel: AMQPChannel
    ) async throws {
        try await channel.declareQueue(deadLetterQueue)
        var arguments = Self.arguments(to: deadLetterQueue)
        for (key, value) in extraArguments { arguments[key] = value }
        do {
            try await channel.declareQueue(queue, arguments: arguments)
        } catch AMQPError.channelClosed(let code, let text) where code == 406 {
            throw QueueArgumentsMismatch(queue: queue, deadLetterQueue: deadLetterQueue, brokerText: text)
        }
    }
}

/// The broker refused to declare a queue because it exists with other arguments (406
/// PRECONDITION_FAILED), typically one created before Warren dead-lettered through the broker.
public struct QueueArgumentsMismatch: Error, Sendable, CustomStringConvertible {
    public let queue: String
    public let deadLetterQueue: String
    public let brokerText: String

    public var description: String {
        "queue '\(queue)' exists on the broker with other arguments than this version declares "
            + "(dead-lettering to '\(deadLetterQueue)'); the broker said: \(brokerText). Stop the service, let the queue drain "
            + "or move its messages, delete it (`rabbitmqctl delete_queue \(queue)`, or the management UI), "
            + "and start the service again: it declares the queue anew."
    }
}

extension DeadLettering {
    /// Bytes of a frame kept free in a copy set aside (retry or dead-letter queue) for what
    /// the broker adds on its way (`x-death`, which grows with each queue it passes). A message
    /// that comes back larger than a frame can be read by no librabbitmq client: its connection
    /// fails on it at every delivery.
    public static let brokerHeadersAllowance = 8 * 1024
}

extension AMQPProperties {
    /// Header name listing the headers a dead-letter copy had to leave out, with their sizes
    /// (`x-padding (130846 bytes)`), so that the copy fits in a frame.
    public static let droppedHeadersHeader = "x-dropped-headers"

    /// These properties, as a copy to set aside, with a content header of at most `limit` bytes
    /// (`AMQPChannel.maxContentHeaderSize` less `DeadLettering.brokerHeadersAllowance`). When
    /// the headers are larger, the largest are left out one at a time and named with their
    /// size in `x-dropped-headers`: the body and every other header are kept, and the copy can
    /// be published, read and requeued, which a copy larger than a frame never could.
    public func fitting(contentHeaderLimit limit: Int) -> AMQPProperties {
        guard let headers, ((try? contentHeaderSize) ?? .max) > limit else { return self }
        var bare = self
        bare.headers = [:]
        func size(_ key: String, _ value: AMQPFieldValue) -> Int {
            var one = bare
            one.headers = [key: value]
            return ((try? one.contentHeaderSize) ?? .max) - ((try? bare.contentHeaderSize) ?? 0)
        }
        var kept = headers
        var dropped: [String] = []
        for (key, bytes) in headers.map({ ($0.key, size($0.key, $0.value)) }).sorted(by: { $0.1 > $1.1 }) {
            var candidate = self
            candidate.headers = kept
            candidate.headers?[Self.droppedHeadersHeader] = .string(dropped.joined(separator: ", "))
            if !dropped.isEmpty, ((try? candidate.contentHeaderSize) ?? .max) <= limit { return candidate }
            kept[key] = nil
            dropped.append("\(key.prefix(64)) (\(bytes) bytes)")
        }
        var properties = self
        properties.headers = [Self.droppedHeadersHeader: .string(dropped.joined(separator: ", "))]
        return properties
    }
}
