import Foundation
public import WarrenAMQP
import WarrenContract

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

    /// Declares `deadLetterQueue`, then `queue` dead-lettering into it (`extraArguments` added),
    /// both of `type` (quorum by default: `DurableQueueType`). Throws `QueueArgumentsMismatch`
    /// when the broker already has either queue with other arguments (one declared by an older
    /// Warren: without dead-lettering, or classic): RabbitMQ never changes a queue's arguments
    /// or type, so the operator must move its messages and delete it first.
    public static func declare(
        _ queue: String, deadLetterQueue: String, extraArguments: AMQPTable = [:], type: DurableQueueType = .quorum,
        on channel: AMQPChannel
    ) async throws {
        try await declareDurable(deadLetterQueue, arguments: type.arguments(consumed: false, deadLettering: false), deadLetterQueue: nil, on: channel)
        var arguments = Self.arguments(to: deadLetterQueue)
        for (key, value) in type.arguments(consumed: true, deadLettering: true) { arguments[key] = value }
        for (key, value) in extraArguments { arguments[key] = value }
        try await declareDurable(queue, arguments: arguments, deadLetterQueue: deadLetterQueue, on: channel)
    }

    /// Declares a durable queue with `arguments`, a 406 from the broker (it exists with others)
    /// turned into `QueueArgumentsMismatch` naming it.
    public static func declareDurable(_ queue: String, arguments: AMQPTable, deadLetterQueue: String?, on channel: AMQPChannel) async throws {
        do {
            try await channel.declareQueue(queue, arguments: arguments)
        } catch AMQPError.channelClosed(let code, let text) where code == 406 {
            throw QueueArgumentsMismatch(queue: queue, deadLetterQueue: deadLetterQueue, brokerText: text)
        }
    }
}

/// What kind of queue Warren declares for a service's durable queues (`<service>.rpc`,
/// `<service>.events`, their `.dlq`s, the retry queues, `events.events`). Reply queues and the
/// CLI's tail queues are temporary and exclusive, and stay classic whatever this says.
///
/// Quorum (the default) replicates each queue over the cluster's nodes (Raft): a queue survives
/// the loss of a minority of them, and with `x-delivery-limit` the broker itself dead-letters a
/// message delivered that many times without an ack (a poison message that crashes its
/// consumer), which a classic queue would redeliver for ever. Dead-lettering is
/// `at-least-once` (the broker keeps the message until the dead-letter queue has it; this
/// needs `x-overflow: reject-publish`), so a node lost at that moment loses nothing. Needs
/// RabbitMQ 3.10 or later (message TTL on the retry queues, at-least-once dead-lettering).
/// Dead-letter queues get no delivery limit: nothing consumes them for good, `warren dlq show`
/// reads and returns, and past a limit the broker would drop what they hold.
public struct DurableQueueType: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case quorum, classic
    }

    public var kind: Kind
    /// Quorum only: how often one message may come back (a consumer rejected it with requeue,
    /// or its channel closed holding it) before the broker dead-letters it instead
    /// (`x-delivery-limit`; a limit of 20 means at most 21 deliveries).
    public var deliveryLimit: Int

    public init(kind: Kind, deliveryLimit: Int = Self.defaultDeliveryLimit) {
        self.kind = kind
        self.deliveryLimit = deliveryLimit
    }

    /// 20, as RabbitMQ 4 sets by default: far above the redeliveries a restart or a lost
    /// connection causes, low enough that a message that kills its consumer stops soon.
    public static let defaultDeliveryLimit = 20
    public static let quorum = DurableQueueType(kind: .quorum)
    public static let classic = DurableQueueType(kind: .classic)

    public var description: String { kind == .quorum ? "quorum (x-delivery-limit \(deliveryLimit))" : "classic" }

    /// `AMQP_QUEUE_TYPE` (`quorum`, the default, or `classic`) and `AMQP_DELIVERY_LIMIT` (1 to
    /// 1,000,000, default 20); `invalid` naming the setting when either is set but unusable.
    public static func from(environment: [String: String]) throws(ServiceError) -> DurableQueueType {
        var type = DurableQueueType.quorum
        if let name = environment["AMQP_QUEUE_TYPE"], !name.isEmpty {
            guard let kind = Kind(rawValue: name.lowercased()) else {
                throw .invalid("AMQP_QUEUE_TYPE='\(name)' is neither 'quorum' nor 'classic'")
            }
            type.kind = kind
        }
        if let limit = try ServiceHost.number(environment, "AMQP_DELIVERY_LIMIT", 1...1_000_000) { type.deliveryLimit = limit }
        return type
    }

    /// The arguments of one queue: `consumed` for a queue that consumers take from (it gets the
    /// delivery limit), `deadLettering` for one declared with a dead-letter exchange.
    public func arguments(consumed: Bool, deadLettering: Bool) -> AMQPTable {
        guard kind == .quorum else { return [:] }
        var arguments: AMQPTable = ["x-queue-type": "quorum"]
        if consumed { arguments["x-delivery-limit"] = .int(Int64(deliveryLimit)) }
        if deadLettering {
            arguments["x-dead-letter-strategy"] = "at-least-once"
            arguments["x-overflow"] = "reject-publish"
        }
        return arguments
    }
}

/// The broker refused to declare a queue because it exists with other arguments (406
/// PRECONDITION_FAILED): one created by an older Warren, without dead-lettering or as a
/// classic queue where this version declares a quorum queue (or the other way round).
public struct QueueArgumentsMismatch: Error, Sendable, CustomStringConvertible {
    public let queue: String
    public let deadLetterQueue: String?
    public let brokerText: String

    public init(queue: String, deadLetterQueue: String?, brokerText: String) {
        self.queue = queue
        self.deadLetterQueue = deadLetterQueue
        self.brokerText = brokerText
    }

    /// The argument the broker names (`inequivalent arg 'x-queue-type' …`), if it does.
    public var argument: String? {
        guard let start = brokerText.range(of: "inequivalent arg '") else { return nil }
        let rest = brokerText[start.upperBound...]
        return rest.firstIndex(of: "'").map { String(rest[..<$0]) }
    }

    public var description: String {
        let what: String
        if argument == "x-queue-type" {
            what = "another queue type: quorum by default, AMQP_QUEUE_TYPE=classic keeps classic queues"
        } else if let deadLetterQueue {
            what = "dead-lettering to '\(deadLetterQueue)', quorum settings"
        } else {
            what = "quorum settings"
        }
        return "queue '\(queue)' exists on the broker with other arguments than this version declares (\(what)); the broker said: \(brokerText). To migrate: stop every "
            + "consumer of the queue, move its messages elsewhere (a shovel, or let it drain), delete it "
            + "(`rabbitmqctl delete_queue \(queue)`, or the management UI), and start the service again: it declares the queue anew. "
            + "README, \"Moving to quorum queues\", has the steps."
    }
}

extension DeadLettering {
    /// Publishes a copy of `delivery` set aside into `target` (a retry or dead-letter queue) with
    /// `properties`, on a channel with confirms, and returns once the broker holds it. The copy
    /// leaves room in the frame for what the broker adds on its way (its largest headers left out
    /// if need be, `AMQPProperties.fitting`), and is mandatory: a deleted queue is an error here,
    /// not a silent loss. Throws what `publish` throws; the caller then rejects the original so
    /// that the broker dead-letters it itself.
    public static func publishCopy(
        of delivery: AMQPDelivery, to target: String, properties: AMQPProperties, on channel: AMQPChannel
    ) async throws {
        let copy = properties.fitting(contentHeaderLimit: channel.maxContentHeaderSize - brokerHeadersAllowance)
        try await channel.publish(delivery.body, routingKey: target, mandatory: true, properties: copy)
    }

    /// Bytes of a frame kept free in a copy set aside (retry or dead-letter queue) for what
    /// the broker adds on its way (`x-death`, which grows with each queue it passes). A message
    /// that comes back larger than a frame can be read by no librabbitmq client: its connection
    /// fails on it at every delivery.
    public static let brokerHeadersAllowance = 8 * 1024
}

extension AMQPProperties {
    /// Header name listing the headers a dead-letter copy had to leave out, with their sizes
    /// (`x-padding (130846 bytes)`), so that the copy fits in a frame.
    public static let droppedHeadersHeader = WireHeader.droppedHeaders

    /// These properties, as a copy to set aside, with a content header of at most `limit` bytes
    /// (`AMQPChannel.maxContentHeaderSize` less `DeadLettering.brokerHeadersAllowance`). When
    /// the headers are larger, the largest are left out until the rest fits, and named with
    /// their sizes in `x-dropped-headers` (at most 1 KiB: then "and N more"): the body, the
    /// reason (`x-error`, `x-original-routing-key`, `x-attempts`) and every other header are kept, and the copy can be published, read and requeued, which a
    /// copy larger than a frame never could. Linear in the number of headers, so that a table
    /// of thousands of small ones costs no more than one pass.
    public func fitting(contentHeaderLimit limit: Int) -> AMQPProperties {
        guard let headers, let total = try? contentHeaderSize, total > limit else { return self }
        var bare = self
        bare.headers = [:]
        let bareSize = (try? bare.contentHeaderSize) ?? 0
        // An entry's encoded size: the content header with it alone, less the one without it.
        func entrySize(_ key: String, _ value: AMQPFieldValue) -> Int {
            var one = bare
            one.headers = [key: value]
            return ((try? one.contentHeaderSize) ?? bareSize) - bareSize
        }
        // The headers that say why the copy was set aside are never the ones left out.
        let reasons: Set = [WireHeader.error, WireHeader.originalRoutingKey, WireHeader.attempts]
        let largestFirst = headers.filter { !reasons.contains($0.key) }
            .map { (key: $0.key, bytes: entrySize($0.key, $0.value)) }.sorted { $0.bytes > $1.bytes }
        // Room for the x-dropped-headers entry itself.
        let budget = limit - Self.maxDroppedNoteBytes - 64
        var size = total
        var dropped: [(key: String, bytes: Int)] = []
        for entry in largestFirst where size > budget {
            size -= entry.bytes
            dropped.append(entry)
        }
        var kept = headers
        for entry in dropped { kept[entry.key] = nil }
        kept[Self.droppedHeadersHeader] = .string(Self.note(dropped))
        var properties = self
        properties.headers = kept
        return properties
    }

    static let maxDroppedNoteBytes = 1024

    /// `x-padding (130846 bytes), x-other (12 bytes)`, ending in `and 998 more (11976 bytes)`
    /// where the list would pass `maxDroppedNoteBytes`.
    private static func note(_ dropped: [(key: String, bytes: Int)]) -> String {
        var note = ""
        for (index, entry) in dropped.enumerated() {
            let item = "\(entry.key.prefix(64)) (\(entry.bytes) bytes)"
            if note.utf8.count + item.utf8.count + 2 > maxDroppedNoteBytes - 48 {
                let rest = dropped[index...]
                return note + ", and \(rest.count) more (\(rest.reduce(0) { $0 + $1.bytes }) bytes)"
            }
            note += note.isEmpty ? item : ", " + item
        }
        return note
    }
}
