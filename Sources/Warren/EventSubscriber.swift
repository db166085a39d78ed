public import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
public import WarrenAMQP

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

        public init(
            retryDelays: [Duration] = [.seconds(1), .seconds(10), .seconds(60)], prefetch: UInt16 = 32, concurrency: Int = 1,
            drainTimeout: Duration = .seconds(10)
        ) {
            self.retryDelays = retryDelays
            self.prefetch = prefetch
            self.concurrency = concurrency
            self.drainTimeout = drainTimeout
        }
    }

    public let service: String
    public var queue: String { "\(service).events" }
    public var deadLetterQueue: String { "\(service).events.dlq" }
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
        "\(queue).retry.\(delay.wholeMilliseconds)ms"
    }

    /// Declares the queue, its bindings, the retry queues and the dead-letter queue.
    public func declareTopology(on channel: AMQPChannel) async throws {
        try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
        try await channel.declareQueue(queue)
        for pattern in patterns {
            try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: pattern)
        }
        for delay in configuration.retryDelays {
            try await channel.declareQueue(retryQueue(delay), arguments: [
                "x-message-ttl": .int(delay.wholeMilliseconds),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": .string(queue),
            ])
        }
        try await channel.declareQueue(deadLetterQueue)
    }

    public func run() async throws {
        try await serveUntilShutdown(queue: queue, logger: logger) { try await serve() }
    }

    private func serve() async throws {
        let channel = try await connection.openChannel()
        // Retries and parking go through a confirm channel: the original is acked only once
        // the broker holds its copy.
        let forwarding = try await connection.openChannel()
        do {
            try await declareTopology(on: channel)
            try await channel.setPrefetch(configuration.prefetch)
            try await forwarding.enableConfirms()
            let events = try await channel.consume(queue: queue)
            logger.info("subscribed", metadata: ["queue": "\(queue)", "patterns": "\(patterns.joined(separator: ","))"])
            try await withGracefulShutdownHandler {
                try await runHandlers(
                    for: events, concurrency: configuration.concurrency, drainTimeout: configuration.drainTimeout, logger: logger
                ) { delivery in
                    await self.handle(delivery, forwarding: forwarding)
                }
            } onGracefulShutdown: {
                Task { await events.cancel() }
            }
        } catch {
            await forwarding.close()
            await channel.close()
            throw error
        }
        await forwarding.close()
        await channel.close()
    }

    private func handle(_ delivery: AMQPDelivery, forwarding: AMQPChannel) async {
        let envelope = Envelope(delivery: delivery)
        let headers = delivery.properties.headers ?? [:]
        let type = headers[WireHeader.originalRoutingKey]?.stringValue ?? delivery.properties.type ?? delivery.routingKey
        let attempt = Int(headers[WireHeader.attempts]?.intValue ?? 0) + 1
        let logger = envelope.logger(logger, type: type)
        let event = Event(
            envelope: envelope, type: type, body: delivery.body, attempt: attempt,
            isReplay: headers[WireHeader.replayed] == .bool(true) || headers[WireHeader.replayed] == "true", logger: logger)

        do {
            if let processed, try await processed.contains(envelope.messageID) {
                logger.debug("event already applied: skipped")
                Counter(label: "warren_events_duplicates_total", dimensions: [("type", type)]).increment()
                try delivery.ack()
                return
            }
            try await handler(event)
            if Task.isCancelled { return }  // drain timed out: redelivered, not retried
            try await processed?.insert(envelope.messageID)
            Counter(label: "warren_events_handled_total", dimensions: [("type", type)]).increment()
            try delivery.ack()
        } catch AMQPError.staleDelivery {
            return  // the broker redelivers it
        } catch {
            if Task.isCancelled { return }
            await failed(delivery, event: event, error: error, forwarding: forwarding)
        }
    }

    private func failed(_ delivery: AMQPDelivery, event: Event, error: any Error, forwarding: AMQPChannel) async {
        let serviceError = error as? ServiceError
        let reason = serviceError?.message ?? String(describing: error)
        let properties = delivery.properties.deadLettered(error: reason, originalRoutingKey: event.type, attempts: event.attempt)
        let retries = configuration.retryDelays
        let target: String
        if serviceError?.code != .invalid, event.attempt <= retries.count {
            target = retryQueue(retries[event.attempt - 1])
            Counter(label: "warren_events_retried_total", dimensions: [("type", event.type)]).increment()
            event.logger.warning("event handler failed; will retry", metadata: ["error": "\(reason)", "attempt": "\(event.attempt)", "retry_queue": "\(target)"])
        } else {
            target = deadLetterQueue
            Counter(label: "warren_events_dead_lettered_total", dimensions: [("type", event.type)]).increment()
            event.logger.error("event parked in the dead-letter queue", metadata: ["error": "\(reason)", "attempts": "\(event.attempt)"])
        }
        do {
            try await forwarding.publish(delivery.body, routingKey: target, properties: properties)
            try delivery.ack()
        } catch {
            // Not forwarded: hand it back so nothing is lost; it comes again (marked redelivered).
            event.logger.error("could not forward a failed event; requeueing it", metadata: ["error": "\(error)"])
            try? delivery.nack(requeue: true)
        }
    }
}
