import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Tracing
import Warren
import WarrenAMQP
import WarrenContract

/// Records every event published to `warren.events` (binding `#`) from the durable queue
/// `events.events`, in batches: it takes what arrived while the previous batch committed (up to
/// `batchSize`), appends it in one transaction and acks it with one multiple-ack after the
/// commit. A crash before the ack redelivers the batch, which the log then skips by event id.
///
/// An event that cannot be stored (no message id, or rejected by the database on its own) is
/// parked in `events.events.dlq` with `x-error` and acked: never lost, and never holding up the
/// events behind it. If the database refuses a whole batch, each event is tried alone, so only
/// the ones at fault are parked. If parking itself fails (the copy with `x-error` does not fit
/// in a frame, the broker refuses it), the event is rejected without requeue and the broker
/// dead-letters it into `events.events.dlq` (the queue's `x-dead-letter-*` arguments): never
/// handed back to loop. `/health` shows the consumer (ConsumerHealth).
final class EventIngestor: Service, ConsumerStrategy, Sendable {
    struct Configuration: Sendable {
        /// Unacked events the broker sends ahead; the next batch fills while one commits.
        var prefetch: UInt16 = 1000
        var batchSize: Int = 500
        /// The type of `events.events` and its dead-letter queue (`AMQP_QUEUE_TYPE`).
        var queueType: DurableQueueType = .quorum
    }

    static let queue = QueueName.events(QueueName.eventStoreService).name
    static let deadLetterQueue = QueueName.eventsDeadLetter(QueueName.eventStoreService).name

    private let connection: AMQPConnection
    private let log: any EventLog
    private let configuration: Configuration
    private let logger: Logger

    init(connection: AMQPConnection, log: any EventLog, configuration: Configuration = .init(), logger: Logger) {
        self.connection = connection
        self.log = log
        self.configuration = configuration
        self.logger = logger
    }

    func run() async throws {
        try await ConsumerService(connection: connection, strategy: self, logger: logger).run()
        logger.info("stopped recording events")
    }

    // MARK: - The batch strategy

    /// The side channel of one run: copies to the dead-letter queue, confirmed.
    struct Session: Sendable {
        let parking: AMQPChannel
    }

    var queue: String { Self.queue }
    var prefetch: UInt16 { configuration.prefetch }
    var delivery: ConsumerDelivery { .batches(upTo: configuration.batchSize) }

    func open(_ channels: ConsumerChannels) async throws -> Session {
        let channel = channels.consuming
        let parking = try await channels.open()
        try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
        try await DeadLettering.declare(Self.queue, deadLetterQueue: Self.deadLetterQueue, type: configuration.queueType, on: channel)
        try await channel.bindQueue(Self.queue, exchange: EventPublisher.exchange, routingKey: "#")
        try await parking.enableConfirms()
        return Session(parking: parking)
    }

    func consuming(_ session: Session) {
        logger.info("recording every event", metadata: ["queue": "\(Self.queue)", "batch_size": "\(configuration.batchSize)"])
    }

    func handle(batch: [AMQPDelivery], in session: Session) async {
        await store(batch, parking: session.parking)
    }

    func handle(_ delivery: AMQPDelivery, in session: Session) async {
        await store([delivery], parking: session.parking)
    }

    private func store(_ batch: [AMQPDelivery], parking: AMQPChannel) async {
        let encoder = WireJSON.encoder()
        var events: [(event: IncomingEvent, delivery: AMQPDelivery)] = []
        var unstorable: [(delivery: AMQPDelivery, reason: String)] = []
        for delivery in batch {
            do {
                events.append((try IncomingEvent(delivery, encoder: encoder), delivery))
            } catch {
                unstorable.append((delivery, error.reason))
            }
        }

        // One consumer span per event, in the trace of the event's publisher, around the
        // append of its batch: the event store is the last stop of every flow's trace.
        let spans: [any Span] = !MessageTracing.isEnabled ? [] : events.compactMap { event, delivery in
            let type = EventSubscriber.eventType(of: delivery) ?? delivery.routingKey
            let span = MessageTracing.startSpan("append \(type)", context: MessageTracing.extract(from: delivery.properties.headers), ofKind: .consumer)
            span?.setMessagingAttributes(
                operation: "append", operationType: "process", destination: Self.queue, routingKey: delivery.routingKey,
                envelope: Envelope(delivery: delivery))
            return span
        }
        defer { for span in spans { span.end() } }
        let started = ContinuousClock.now
        var stored = 0
        var failed = 0
        do {
            stored = try await log.append(events.map(\.event))
        } catch {
            logger.error("could not store a batch; storing its events one at a time", metadata: ["error": "\(error)", "count": "\(events.count)"])
            for (event, delivery) in events {
                do {
                    stored += try await log.append([event])
                } catch {
                    unstorable.append((delivery, "the event store could not store it: \(error)"))
                    failed += 1
                }
            }
        }
        Metrics.Timer(label: "events_append_batch_duration_seconds").recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
        Counter(label: "events_appended_total").increment(by: stored)
        Counter(label: "events_duplicates_total").increment(by: events.count - failed - stored)

        var failedToPark: Set<UInt64> = []
        for (delivery, reason) in unstorable {
            if !(await park(delivery, reason: reason, on: parking)) { failedToPark.insert(delivery.deliveryTag) }
        }
        do {
            if failedToPark.isEmpty, let last = batch.last {
                try last.ack(multiple: true)
            } else {
                for delivery in batch {
                    // Not parked by copy: the broker dead-letters it (never requeued to loop).
                    if failedToPark.contains(delivery.deliveryTag) { try delivery.reject(requeue: false) } else { try delivery.ack() }
                }
            }
        } catch {
            // The connection dropped since: the broker redelivers the batch and the log skips it.
            logger.warning("could not ack a stored batch; it will be redelivered and skipped", metadata: ["error": "\(error)"])
        }
    }

    /// Keeps the event for a person, with the reason; false if the broker did not take it.
    private func park(_ delivery: AMQPDelivery, reason: String, on channel: AMQPChannel) async -> Bool {
        var properties = delivery.properties.deadLettered(error: reason, originalRoutingKey: delivery.routingKey, attempts: 1)
        properties.deliveryMode = .persistent
        do {
            try await DeadLettering.publishCopy(of: delivery, to: Self.deadLetterQueue, properties: properties, on: channel)
            Counter(label: "events_dead_lettered_total").increment()
            logger.error("parked an event the store cannot keep", metadata: ["dlq": "\(Self.deadLetterQueue)", "error": "\(reason)"])
            return true
        } catch {
            logger.error(
                "could not park a copy of the event; rejecting it so that the broker dead-letters it",
                metadata: ["error": "\(error)", "reason": "\(reason)", "dlq": "\(Self.deadLetterQueue)"])
            return false
        }
    }
}
