import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
public import WarrenAMQP

/// Serves `<service>.rpc`: takes requests (`prefetch` at a time, `concurrency` handlers at
/// once), dispatches them by AMQP `type` and replies to `reply_to` with the request's
/// `correlation_id` and header `x-status: ok|error`.
///
/// Never crashes on input: malformed JSON, a failing field, an unknown type get an `invalid`
/// reply; a request past its deadline is not executed (`timeout` reply); an unexpected error is
/// `internal` without its details, which go to the log. A request without `reply_to` is a
/// fire-and-forget command: processed, or parked in `<service>.rpc.dlq` with `x-error` if it
/// cannot be. The request is acked only after its reply is handed to the broker connection.
/// On graceful shutdown it stops taking requests and finishes those it holds.
public final class RPCResponder: Service, Sendable {
    public struct Configuration: Sendable {
        public var prefetch: UInt16
        public var concurrency: Int
        /// The longest graceful shutdown waits for handlers still running.
        public var drainTimeout: Duration

        public init(prefetch: UInt16 = 64, concurrency: Int = 64, drainTimeout: Duration = .seconds(10)) {
            self.prefetch = prefetch
            self.concurrency = concurrency
            self.drainTimeout = drainTimeout
        }
    }

    public let service: String
    public var queue: String { "\(service).rpc" }
    public var deadLetterQueue: String { "\(service).rpc.dlq" }
    private let connection: AMQPConnection
    private let handlers: RPCHandlers
    private let configuration: Configuration
    private let rpc: RPCClient?
    private let logger: Logger
    private let requests = MetricHandles(counter: "warren_requests_total", "operation", "outcome")
    private let durations = MetricHandles(timer: "warren_request_duration_seconds", "operation")

    public init(
        service: String, connection: AMQPConnection, handlers: RPCHandlers, configuration: Configuration = Configuration(),
        rpc: RPCClient? = nil, logger: Logger = Logger(label: "warren.responder")
    ) {
        self.service = service
        self.connection = connection
        self.handlers = handlers
        self.configuration = configuration
        self.rpc = rpc
        var logger = logger
        logger[metadataKey: "service"] = "\(service)"
        self.logger = logger
    }

    public func run() async throws {
        try await serveUntilShutdown(queue: queue, logger: logger) { try await serve() }
        logger.info("stopped serving", metadata: ["queue": "\(queue)"])
    }

    private func serve() async throws {
        let channel = try await connection.openChannel()
        let parking = try await connection.openChannel()
        do {
            try await channel.setPrefetch(configuration.prefetch)
            try await channel.declareQueue(queue)
            try await parking.enableConfirms()
            try await parking.declareQueue(deadLetterQueue)
            let requests = try await channel.consume(queue: queue)
            logger.info("serving", metadata: ["queue": "\(queue)", "operations": "\(handlers.operations.joined(separator: ","))"])
            try await withGracefulShutdownHandler {
                try await runHandlers(
                    for: requests, concurrency: configuration.concurrency, drainTimeout: configuration.drainTimeout, logger: logger
                ) { delivery in
                    await self.handle(delivery, replyOn: channel, parking: parking)
                }
            } onGracefulShutdown: {
                // Stop the broker sending more; what was already delivered is still handled.
                Task { await requests.cancel() }
            }
        } catch {
            await parking.close()
            await channel.close()
            throw error
        }
        await parking.close()
        await channel.close()
    }

    private func handle(_ delivery: AMQPDelivery, replyOn channel: AMQPChannel, parking: AMQPChannel) async {
        let envelope = Envelope(delivery: delivery)
        let logger = envelope.logger(logger, type: envelope.type ?? "-")
        let started = ContinuousClock.now
        let operation = envelope.type ?? "-"
        // The metrics' label: only operations this service has, so that clients cannot grow it.
        let operationLabel = envelope.type.flatMap { handlers.handlers[$0] == nil ? nil : $0 } ?? "unknown"

        let result: Result<Data, ServiceError>
        if let deadline = envelope.deadline, deadline < Date() {
            logger.info("request past its deadline: not executed")
            result = .failure(.timeout("the request's deadline passed before it was handled"))
        } else if let type = envelope.type, let handler = handlers.handlers[type] {
            do {
                result = .success(try await handler(delivery.body, RequestContext(envelope: envelope, logger: logger, rpc: rpc)))
            } catch let error as ServiceError {
                result = .failure(error)
            } catch {
                logger.error("handler failed", metadata: ["error": "\(String(reflecting: error))"])
                result = .failure(.internal("internal error (correlation id \(envelope.correlationID))"))
            }
        } else if envelope.type == nil {
            result = .failure(.invalid("the request has no AMQP 'type' property naming the operation"))
        } else {
            result = .failure(.invalid("unknown operation '\(operation)' on \(queue); known: \(handlers.operations.joined(separator: ", "))"))
        }

        let outcome: String
        switch result {
        case .success: outcome = "ok"
        case .failure(let error): outcome = error.code.rawValue
        }
        requests(operationLabel, outcome).increment()
        durations(operationLabel).recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))

        if Task.isCancelled {
            // Drain timed out: leave it unacked; the broker gives it to another instance.
            return
        }
        do {
            if let replyTo = delivery.properties.replyTo {
                try reply(result, to: replyTo, correlationID: delivery.properties.correlationID, on: channel)
                try delivery.ack()
            } else if case .failure(let error) = result, error.code == .invalid {
                // A command nobody waits for, and it can never succeed: keep it for a person.
                try await park(delivery, reason: error, on: parking)
                try delivery.ack()
            } else {
                if case .failure(let error) = result { logger.warning("command failed", metadata: ["error": "\(error)"]) }
                try delivery.ack()
            }
        } catch {
            // The connection dropped: the broker redelivers the request to some instance.
            logger.warning("could not finish a request; it will be redelivered", metadata: ["error": "\(error)"])
        }
    }

    private func reply(_ result: Result<Data, ServiceError>, to replyTo: String, correlationID: String?, on channel: AMQPChannel) throws {
        let (status, body): (String, Data)
        switch result {
        case .success(let data): (status, body) = ("ok", data)
        case .failure(let error): (status, body) = ("error", (try? WireJSON.encode(ErrorReply(error: error))) ?? Data())
        }
        try channel.send(
            body, routingKey: replyTo,
            properties: AMQPProperties(
                contentType: "application/json", headers: [WireHeader.status: .string(status)], correlationID: correlationID))
    }

    private func park(_ delivery: AMQPDelivery, reason: ServiceError, on channel: AMQPChannel) async throws {
        let properties = delivery.properties.deadLettered(error: reason.message, originalRoutingKey: delivery.routingKey)
        try await channel.publish(delivery.body, routingKey: deadLetterQueue, properties: properties)
        Counter(label: "warren_dead_lettered_total", dimensions: [("queue", queue)]).increment()
        logger.warning("parked an invalid command", metadata: ["dlq": "\(deadLetterQueue)", "error": "\(reason.message)"])
    }
}
