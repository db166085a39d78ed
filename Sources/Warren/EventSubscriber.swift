public import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
import Tracing
public import WarrenAMQP
import WarrenContract

/// An event as a handler sees it.
public struct Event: Sendable {
    public let envelope: Envelope
    /// The event type (the original routing key, also after a retry).
    public let type: String
    public let body: Data
    /// 1 on first delivery, then one more per retry.
    public let attempt: Int
    public let isReplay: Bool
    public let logger: Logger

    /// Decodes the body; a body that does not decode is an `invalid` error (retrying cannot help).
    public func decode<Payload: Decodable>(_ type: Payload.Type) throws(ServiceError) -> Payload {
        try WireJSON.decode(type, from: body)
    }
}

/// Consumes a service's durable queue `<service>.events`, bound to `warren.events` with the
/// patterns it asks for, and hands each event to its handler.
///
/// Success → ack. Failure → the event goes to a retry queue whose TTL holds it for the next
/// delay (the broker keeps it, not the process) and then dead-letters it back to this service's
/// queue only; after the last delay it is parked in `<service>.events.dlq` with `x-error`,
/// `x-attempts` and `x-original-routing-key`. Never lost, never retried forever, never blocking
/// the events behind it. An `invalid` error (the event can never be handled) is parked at once.
/// With `processed` set, an event id already applied is acked without running the handler.
///
/// Every delivery ends acked or set aside. When the copy for a retry or the dead-letter queue
/// cannot be published (it no longer fits in a frame once `x-error` is added, the broker
/// refuses it), the event is rejected without requeue and the broker itself dead-letters it to
/// `<service>.events.dlq` (the queue is declared with `x-dead-letter-exchange` and
/// `x-dead-letter-routing-key`; the broker's `x-death` header then says `rejected`). An event
/// whose headers leave less than `DeadLettering.brokerHeadersAllowance` free in a frame is not retried but
/// parked: the broker's `x-death` on the way back from a retry queue would make it larger than
/// a frame, and a consumer's connection fails on such a message each time it is delivered.
///
/// The handler only sees the types it subscribed to. An event's type is decided thus:
/// - delivered through `warren.events`: its routing key, the key the broker matched against
///   the bindings (a disagreeing AMQP `type` or `x-original-routing-key` is ignored);
/// - put straight into the queue (a retry coming back through the default exchange, a replay
///   with `warren replay --to`, a dead letter requeued, anyone's publish to the queue), where
///   the routing key is only the queue's name: `x-original-routing-key`, which Warren's
///   retries and parking set to the type decided at the first delivery, else the AMQP `type`.
/// An event whose type matches none of the patterns (AMQP topic matching), or that has no
/// type, is parked with the reason and the handler does not run.
public final class EventSubscriber: Service, Sendable {
    public typealias Handler = @Sendable (Event) async throws -> Void

    public struct Configuration: Sendable {
        /// Delays before each retry; their count is the number of retries.
        public var retryDelays: [Duration]
        public var prefetch: UInt16
        /// Handlers at once. 1 keeps events in order.
        public var concurrency: Int
        /// The longest graceful shutdown waits for handlers still running.
        public var drainTimeout: Duration
        /// The type of `<service>.events`, its retry queues and its dead-letter queue
        /// (`AMQP_QUEUE_TYPE`; the service host sets it from the environment).
        public var queueType: DurableQueueType
        /// Where the handler runs (`HANDLER_EXECUTOR`; the service host sets it from the
        /// environment): on the connection's I/O thread by default.
        public var executor: HandlerExecutor

        public init(
            retryDelays: [Duration] = [.seconds(1), .seconds(10), .seconds(60)], prefetch: UInt16 = 32, concurrency: Int = 1,
            drainTimeout: Duration = .seconds(10), queueType: DurableQueueType = .quorum, executor: HandlerExecutor = .ioThread
        ) {
            self.executor = executor
            self.retryDelays = retryDelays
            self.prefetch = prefetch
            self.concurrency = concurrency
            self.drainTimeout = drainTimeout
            self.queueType = queueType
        }
    }

    public let service: String
    public var queue: String { QueueName.events(service).name }
    public var deadLetterQueue: String { QueueName.eventsDeadLetter(service).name }
    private let connection: AMQPConnection
    private let patterns: [String]
    private let handler: Handler
    private let processed: (any ProcessedMessages)?
    private let configuration: Configuration
    private let logger: Logger

    public init(
        service: String, connection: AMQPConnection, patterns: [String], configuration: Configuration = Configuration(),
        processed: (any ProcessedMessages)? = nil, logger: Logger = Logger(label: "warren.events"), handler: @escaping Handler
    ) {
        self.service = service
        self.connection = connection
        self.patterns = patterns
        self.configuration = configuration
        self.processed = processed
        self.handler = handler
        var logger = logger
        logger[metadataKey: "service"] = "\(service)"
        self.logger = logger
    }

    func retryQueue(_ delay: Duration) -> String {
        QueueName.eventsRetry(service, delay: delay).name
    }

    /// Declares the queue, its bindings, the retry queues and the dead-letter queue.
    public func declareTopology(on channel: AMQPChannel) async throws {
        try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
        // The dead-letter queue first: the broker drops what it dead-letters to a missing queue.
        try await DeadLettering.declare(queue, deadLetterQueue: deadLetterQueue, type: configuration.queueType, on: channel)
        for pattern in patterns {
            try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: pattern)
        }
        for delay in configuration.retryDelays {
            // Nothing consumes a retry queue: the TTL dead-letters each event back to `queue`.
            var arguments = configuration.queueType.arguments(consumed: false, deadLettering: true)
            arguments["x-message-ttl"] = .int(delay.wholeMilliseconds)
            for (key, value) in DeadLettering.arguments(to: queue) { arguments[key] = value }
            try await DeadLettering.declareDurable(retryQueue(delay), arguments: arguments, deadLetterQueue: queue, on: channel)
        }
    }

    public func run() async throws {
        let strategy = InternalStrategy(
            queue: queue, prefetch: prefetch, delivery: delivery, start: open, started: consuming, each: { await self.handle($0, in: $1) })
        try await ConsumerService(connection: connection, strategy: strategy, logger: logger).run()
    }

    // MARK: - The subscribe strategy

    /// The side channel of one run: retries and parking go through a confirm channel, so that
    /// the original is acked only once the broker holds its copy.
    struct Session: Sendable {
        let forwarding: AMQPChannel
    }

    var prefetch: UInt16 { configuration.prefetch }
    var delivery: ConsumerDelivery {
        .each(concurrency: configuration.concurrency, drainTimeout: configuration.drainTimeout, executor: configuration.executor)
    }

    func open(_ channels: ConsumerChannels) async throws -> Session {
        let forwarding = try await channels.open()
        try await declareTopology(on: channels.consuming)
        try await forwarding.enableConfirms()
        return Session(forwarding: forwarding)
    }

    func consuming(_ session: Session) {
        logger.info("subscribed", metadata: ["queue": "\(queue)", "patterns": "\(patterns.joined(separator: ","))"])
    }

    func handle(_ delivery: AMQPDelivery, in session: Session) async {
        await handle(delivery, forwarding: session.forwarding)
    }

    /// The event type of a delivery, as the type doc above decides it; nil when it has none.
    /// Public so that whatever puts an event back into a subscriber's queue (`warren dlq
    /// requeue`) decides its type by the same rule as the subscriber that will take it.
    public static func eventType(of delivery: AMQPDelivery) -> String? {
        if delivery.exchange == EventPublisher.exchange { return delivery.routingKey }
        return delivery.properties.headers?[WireHeader.originalRoutingKey]?.stringValue ?? delivery.properties.type
    }

    /// 1 on first delivery, then the previous `x-attempts` plus one. The header may hold
    /// anything: a negative, non-numeric or wrong-typed one counts as absent, a huge one as
    /// `Int.max` (which is past every retry, so the event is parked).
    /// How long handlers take, per event type (those this service subscribes to).
    private static let handlerDurations = MetricHandles(timer: "warren_event_handler_duration_seconds", "type")

    static func attempt(from headers: AMQPTable) -> Int {
        let previous = Int(clamping: headers[WireHeader.attempts]?.integer(clampedTo: 0...Int64.max) ?? 0)
        let (next, overflow) = previous.addingReportingOverflow(1)
        return overflow ? .max : next
    }

    private func handle(_ delivery: AMQPDelivery, forwarding: AMQPChannel) async {
        var envelope = Envelope(delivery: delivery)
        let headers = delivery.properties.headers ?? [:]
        let attempt = Self.attempt(from: headers)
        guard let type = Self.eventType(of: delivery), TopicPattern.matches(any: patterns, type) else {
            let type = Self.eventType(of: delivery)
            let reason =
                type.map { "event type '\($0)' is not one \(service) subscribes to (\(patterns.joined(separator: ", ")))" }
                ?? "the event has no type: it came straight to \(queue) without an AMQP 'type' or x-original-routing-key"
            let logger = envelope.logger(logger, type: type ?? "-")
            Counter(label: "warren_events_dead_lettered_total", dimensions: [("type", "unsubscribed")]).increment()
            logger.error("event of a type this service does not subscribe to: parked, not handled", metadata: ["error": "\(reason)"])
            await setAside(
                delivery, to: deadLetterQueue, properties: delivery.properties.deadLettered(error: reason, originalRoutingKey: type ?? delivery.routingKey, attempts: attempt),
                logger: logger, forwarding: forwarding)
            return
        }
        // The consumer span, child of the publisher's span (its `traceparent` header), around
        // the handler: what the handler causes belongs to the same trace.
        let span = MessageTracing.startSpan("process \(type)", context: MessageTracing.extract(from: headers), ofKind: .consumer)
        defer { span?.end() }
        guard let span else {
            await handle(delivery, envelope: envelope, type: type, attempt: attempt, span: nil, forwarding: forwarding)
            return
        }
        span.setMessagingAttributes(operation: "process", operationType: "process", destination: queue, routingKey: delivery.routingKey, envelope: envelope)
        if let traceparent = MessageTracing.traceparent(of: span.context) { envelope.traceparent = traceparent }
        await ServiceContext.withValue(span.context) {
            await handle(delivery, envelope: envelope, type: type, attempt: attempt, span: span, forwarding: forwarding)
        }
    }

    private func handle(_ delivery: AMQPDelivery, envelope: Envelope, type: String, attempt: Int, span: (any Span)?, forwarding: AMQPChannel) async {
        let headers = delivery.properties.headers ?? [:]
        let logger = envelope.logger(logger, type: type)
        let event = Event(
            envelope: envelope, type: type, body: delivery.body, attempt: attempt,
            isReplay: headers[WireHeader.replayed] == .bool(true) || headers[WireHeader.replayed] == "true", logger: logger)

        do {
            if let unstorable = envelope.invalidField() { throw unstorable }
            if let processed, try await processed.contains(envelope.messageID) {
                logger.debug("event already applied: skipped")
                Counter(label: "warren_events_duplicates_total", dimensions: [("type", type)]).increment()
                try delivery.ack()
                return
            }
            let started = ContinuousClock.now
            do {
                try await handler(event)
            } catch {
                Self.handlerDurations(type).recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
                throw error
            }
            Self.handlerDurations(type).recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
            if Task.isCancelled { return }  // drain timed out: redelivered, not retried
            try await processed?.insert(envelope.messageID)
            Counter(label: "warren_events_handled_total", dimensions: [("type", type)]).increment()
            try delivery.ack()
        } catch AMQPError.staleDelivery {
            return  // the broker redelivers it
        } catch {
            if Task.isCancelled { return }
            if let error = error as? ServiceError { span?.recordServiceError(error) } else { span?.setStatus(.init(code: .error)) }
            await failed(delivery, event: event, error: error, forwarding: forwarding)
        }
    }

    private func failed(_ delivery: AMQPDelivery, event: Event, error: any Error, forwarding: AMQPChannel) async {
        let serviceError = error as? ServiceError
        let reason = serviceError?.message ?? String(describing: error)
        let properties = delivery.properties.deadLettered(error: reason, originalRoutingKey: event.type, attempts: event.attempt)
        let retries = configuration.retryDelays
        let target: String
        // A retry comes back with the broker's x-death added (it grows with each retry queue);
        // a copy with less room than that would come back larger than a frame, which no
        // librabbitmq consumer can read: its connection would fail on it again and again.
        let roomForRetry = ((try? properties.contentHeaderSize) ?? .max) <= forwarding.maxContentHeaderSize - DeadLettering.brokerHeadersAllowance
        if !roomForRetry {
            event.logger.warning("the event's headers leave no room for the broker's x-death on a retry: parking it instead", metadata: ["error": "\(reason)"])
        }
        if serviceError?.code != .invalid, roomForRetry, event.attempt >= 1, event.attempt <= retries.count {
            target = retryQueue(retries[event.attempt - 1])
            Counter(label: "warren_events_retried_total", dimensions: [("type", event.type)]).increment()
            event.logger.warning("event handler failed; will retry", metadata: ["error": "\(reason)", "attempt": "\(event.attempt)", "retry_queue": "\(target)"])
        } else {
            target = deadLetterQueue
            Counter(label: "warren_events_dead_lettered_total", dimensions: [("type", event.type)]).increment()
            event.logger.error("event parked in the dead-letter queue", metadata: ["error": "\(reason)", "attempts": "\(event.attempt)"])
        }
        await setAside(delivery, to: target, properties: properties, logger: event.logger, forwarding: forwarding)
    }

    /// Publishes the copy to `target` (confirmed) and acks the original. If the copy cannot be
    /// published, the original is rejected without requeue: the broker dead-letters it into
    /// `<service>.events.dlq` itself, so it is neither lost nor handed back to loop.
    private func setAside(_ delivery: AMQPDelivery, to target: String, properties: AMQPProperties, logger: Logger, forwarding: AMQPChannel) async {
        do {
            try await DeadLettering.publishCopy(of: delivery, to: target, properties: properties, on: forwarding)
        } catch {
            logger.error(
                "could not publish the event's copy; rejecting it so that the broker dead-letters it",
                metadata: ["error": "\(error)", "target": "\(target)", "dlq": "\(deadLetterQueue)"])
            Counter(label: "warren_events_rejected_total").increment()
            do {
                try delivery.reject(requeue: false)
            } catch {
                // The channel closed since: the broker redelivers it, and it comes here again.
                logger.warning("could not reject the event; the broker will redeliver it", metadata: ["error": "\(error)"])
            }
            return
        }
        do {
            try delivery.ack()
        } catch {
            // The copy is kept; the redelivered original is set aside again (events are idempotent).
            logger.warning("could not ack the event after setting it aside; the broker will redeliver it", metadata: ["error": "\(error)"])
        }
    }
}
