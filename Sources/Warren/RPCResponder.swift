import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
import Tracing
public import WarrenAMQP
import WarrenContract

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
///
/// Every delivery ends acked or dead-lettered, whatever its size or content: `<service>.rpc` is
/// declared with `x-dead-letter-exchange` → `<service>.rpc.dlq`, so a command whose copy cannot
/// be published (it would not fit in a frame) is rejected and the broker itself parks it.
/// Replies go out on a channel of their own: a reply the broker refuses (a bad `reply_to`)
/// closes that channel, never the one the requests and their acks travel on.
///
/// Operations registered with `RPCHandlers.onCommand` are looked up in `inbox` by `message_id`
/// first: a redelivered command that already committed is answered with its stored reply, not
/// executed again (without a `message_id` no such check is possible).
public final class RPCResponder: Service, Sendable {
    public struct Configuration: Sendable {
        public var prefetch: UInt16
        public var concurrency: Int
        /// The longest graceful shutdown waits for handlers still running.
        public var drainTimeout: Duration
        /// The largest reply body sent, in bytes; a larger one is replaced by an `internal`
        /// error reply. Below the broker's `max_message_size` (16 MiB by default since
        /// RabbitMQ 4), which would otherwise refuse the reply by closing the channel.
        public var maxReplyBytes: Int
        /// The type of `<service>.rpc` and its dead-letter queue (`AMQP_QUEUE_TYPE`).
        public var queueType: DurableQueueType
        /// Where the handlers run (`HANDLER_EXECUTOR`): on the connection's I/O thread by default.
        public var executor: HandlerExecutor

        public init(
            prefetch: UInt16 = 64, concurrency: Int = 64, drainTimeout: Duration = .seconds(10), maxReplyBytes: Int = 16 << 20,
            queueType: DurableQueueType = .quorum, executor: HandlerExecutor = .ioThread
        ) {
            self.executor = executor
            self.prefetch = prefetch
            self.concurrency = concurrency
            self.drainTimeout = drainTimeout
            self.maxReplyBytes = maxReplyBytes
            self.queueType = queueType
        }
    }

    public let service: String
    public var queue: String { QueueName.rpc(service).name }
    public var deadLetterQueue: String { QueueName.rpcDeadLetter(service).name }
    private let connection: AMQPConnection
    private let handlers: RPCHandlers
    private let configuration: Configuration
    private let rpc: RPCClient?
    private let inbox: (any CommandInbox)?
    private let logger: Logger
    private let requests = MetricHandles(counter: "warren_requests_total", "operation", "outcome")
    private let durations = MetricHandles(timer: "warren_request_duration_seconds", "operation")
    /// Requests this process is handling, over all its responders.
    private static let inFlight = Meter(label: "warren_requests_in_flight")

    public init(
        service: String, connection: AMQPConnection, handlers: RPCHandlers, configuration: Configuration = Configuration(),
        rpc: RPCClient? = nil, inbox: (any CommandInbox)? = nil, logger: Logger = Logger(label: "warren.responder")
    ) {
        self.service = service
        self.connection = connection
        self.handlers = handlers
        self.configuration = configuration
        self.rpc = rpc
        self.inbox = inbox
        var logger = logger
        logger[metadataKey: "service"] = "\(service)"
        self.logger = logger
    }

    public func run() async throws {
        _ = Self.inFlight  // the gauge exists (at 0) before the first request
        if inbox == nil, !handlers.commands.isEmpty {
            logger.warning(
                "commands registered without a command inbox: a redelivered command runs again",
                metadata: ["operations": "\(handlers.commands.sorted().joined(separator: ","))"])
        }
        let strategy = InternalStrategy(
            queue: queue, prefetch: prefetch, delivery: delivery, start: open, started: consuming, each: { await self.handle($0, in: $1) })
        try await ConsumerService(connection: connection, strategy: strategy, logger: logger).run()
        logger.info("stopped serving", metadata: ["queue": "\(queue)"])
    }

    // MARK: - The reply strategy

    /// The side channels of one run: `parking` (confirms) for copies to the dead-letter queue,
    /// `replies` for the replies, so that a reply the broker refuses (a bad `reply_to`) closes
    /// that channel, never the one the requests and their acks travel on.
    struct Session: Sendable {
        let parking: AMQPChannel
        let replies: AMQPChannel
    }

    var prefetch: UInt16 { configuration.prefetch }
    var delivery: ConsumerDelivery {
        .each(concurrency: configuration.concurrency, drainTimeout: configuration.drainTimeout, executor: configuration.executor)
    }

    func open(_ channels: ConsumerChannels) async throws -> Session {
        let parking = try await channels.open()
        let replies = try await channels.open()
        try await parking.enableConfirms()
        try await DeadLettering.declare(queue, deadLetterQueue: deadLetterQueue, type: configuration.queueType, on: parking)
        return Session(parking: parking, replies: replies)
    }

    func consuming(_ session: Session) {
        logger.info("serving", metadata: ["queue": "\(queue)", "operations": "\(handlers.operations.joined(separator: ","))"])
    }

    func handle(_ delivery: AMQPDelivery, in session: Session) async {
        await handle(delivery, replyOn: session.replies, parking: session.parking)
    }

    private func handle(_ delivery: AMQPDelivery, replyOn replies: AMQPChannel, parking: AMQPChannel) async {
        Self.inFlight.increment()
        defer { Self.inFlight.decrement() }
        var envelope = Envelope(delivery: delivery)
        let started = ContinuousClock.now
        // The metrics' label: only operations this service has, so that clients cannot grow it.
        let operationLabel = envelope.type.flatMap { handlers.handlers[$0] == nil ? nil : $0 } ?? "unknown"
        // The server span, child of the caller's client span (its `traceparent` header); the
        // handler runs inside it, so its log lines, nested calls and outbox rows belong to it.
        let span = MessageTracing.startSpan(
            "process \(operationLabel)", context: MessageTracing.extract(from: delivery.properties.headers), ofKind: .server)
        defer { span?.end() }
        guard let span else {
            await handle(delivery, envelope: envelope, span: nil, operationLabel: operationLabel, started: started, replyOn: replies, parking: parking)
            return
        }
        span.setMessagingAttributes(operation: "process", operationType: "process", destination: queue, routingKey: delivery.routingKey, envelope: envelope)
        if let traceparent = MessageTracing.traceparent(of: span.context) {
            // What this request causes (events, through `caused`) is a child of this span.
            envelope.traceparent = traceparent
        }
        await ServiceContext.withValue(span.context) {
            await handle(delivery, envelope: envelope, span: span, operationLabel: operationLabel, started: started, replyOn: replies, parking: parking)
        }
    }

    private func handle(
        _ delivery: AMQPDelivery, envelope: Envelope, span: (any Span)?, operationLabel: String, started: ContinuousClock.Instant,
        replyOn replies: AMQPChannel, parking: AMQPChannel
    ) async {
        let logger = envelope.logger(logger, type: envelope.type ?? "-")
        let operation = envelope.type ?? "-"

        let result: Result<Data, ServiceError>
        if let unstorable = envelope.invalidField() {
            result = .failure(unstorable)
        } else if let type = envelope.type, let handler = handlers.handlers[type] {
            result = await run(handler, type: type, delivery: delivery, envelope: envelope, logger: logger)
        } else if envelope.type == nil {
            result = .failure(.invalid("the request has no AMQP 'type' property naming the operation"))
        } else {
            result = .failure(.invalid("unknown operation '\(operation)' on \(queue); known: \(handlers.operations.joined(separator: ", "))"))
        }

        let outcome: String
        switch result {
        case .success: outcome = "ok"
        case .failure(let error):
            outcome = error.code.rawValue
            span?.recordServiceError(error)
        }
        requests(operationLabel, outcome).increment()
        durations(operationLabel).recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))

        if Task.isCancelled {
            // Drain timed out: leave it unacked; the broker gives it to another instance.
            return
        }
        do {
            if let replyTo = delivery.properties.replyTo {
                reply(result, to: replyTo, correlationID: delivery.properties.correlationID, on: replies, logger: logger)
                try delivery.ack()
            } else if case .failure(let error) = result, error.code == .invalid {
                // A command nobody waits for, and it can never succeed: keep it for a person.
                try await park(delivery, reason: error, on: parking, logger: logger)
            } else {
                if case .failure(let error) = result { logger.warning("command failed", metadata: ["error": "\(error)"]) }
                try delivery.ack()
            }
        } catch {
            // The connection dropped: the broker redelivers the request to some instance (a
            // command that committed is then answered from the inbox).
            logger.warning("could not finish a request; it will be redelivered", metadata: ["error": "\(error)"])
        }
    }

    /// Runs the handler, or answers from the command inbox: a command whose `message_id` already
    /// committed is not executed again, whatever its deadline (it was executed: saying `timeout`
    /// would not be true).
    private func run(
        _ handler: RPCHandlers.Handler, type: String, delivery: AMQPDelivery, envelope: Envelope, logger: Logger
    ) async -> Result<Data, ServiceError> {
        var command: Command?
        if handlers.commands.contains(type), let inbox, let messageID = delivery.properties.messageID, !messageID.isEmpty {
            let candidate = Command(messageID: messageID, operation: type, body: delivery.body)
            do {
                if let stored = try await inbox.storedReply(for: messageID) {
                    return answer(candidate, from: stored, logger: logger)
                }
            } catch {
                // Executing without the check could apply the command twice: refuse, it is retryable.
                logger.error("command inbox lookup failed", metadata: ["error": "\(String(reflecting: error))"])
                return .failure(.unavailable("the service could not check whether this command was already executed; it was not executed now"))
            }
            command = candidate
        }
        if let deadline = envelope.deadline, deadline < Date() {
            logger.info("request past its deadline: not executed")
            return .failure(.timeout("the request's deadline passed before it was handled"))
        }
        do {
            return .success(try await handler(delivery.body, RPCContext(envelope: envelope, logger: logger, rpc: rpc, command: command)))
        } catch let error as ServiceError {
            return .failure(error)
        } catch let applied as CommandAlreadyApplied {
            // Another delivery of the same command committed while this one ran: its reply is the answer.
            if let command, let inbox, let stored = try? await inbox.storedReply(for: applied.messageID) {
                return answer(command, from: stored, logger: logger)
            }
            logger.error("command reported applied but its reply is not in the inbox", metadata: ["error": "\(applied)"])
            return .failure(.internal("internal error (correlation id \(envelope.correlationID))"))
        } catch {
            logger.error("handler failed", metadata: ["error": "\(String(reflecting: error))"])
            return .failure(.internal("internal error (correlation id \(envelope.correlationID))"))
        }
    }

    private func answer(_ command: Command, from stored: StoredReply, logger: Logger) -> Result<Data, ServiceError> {
        guard stored.operation == command.operation, stored.fingerprint == command.fingerprint else {
            logger.warning("message id reused for a different request: refused")
            return .failure(
                .conflict("message_id '\(command.messageID)' was already used for a different \(stored.operation) request; use a new id (or Idempotency-Key) for a new request"))
        }
        logger.info("command already executed: answered with its stored reply, not executed again")
        Counter(label: "warren_commands_deduplicated_total", dimensions: [("queue", queue)]).increment()
        return .success(stored.body)
    }

    /// Sends the reply; a reply that cannot be sent is logged and the request is still acked
    /// (it was handled; sending it again would not help). One too large for the broker becomes
    /// an `internal` error reply.
    private func reply(_ result: Result<Data, ServiceError>, to replyTo: String, correlationID: String?, on channel: AMQPChannel, logger: Logger) {
        var result = result
        if case .success(let data) = result, data.count > configuration.maxReplyBytes {
            logger.error("reply too large to send", metadata: ["bytes": "\(data.count)", "limit": "\(configuration.maxReplyBytes)"])
            result = .failure(.internal("the reply would be \(data.count) bytes, more than the \(configuration.maxReplyBytes) a reply may have"))
        }
        let (status, body): (String, Data)
        switch result {
        case .success(let data): (status, body) = ("ok", data)
        case .failure(let error): (status, body) = ("error", (try? WireJSON.encode(ErrorReply(error: error))) ?? Data())
        }
        do {
            try channel.send(
                body, routingKey: replyTo,
                properties: AMQPProperties(
                    contentType: "application/json", headers: [WireHeader.status: .string(status)], correlationID: correlationID))
        } catch {
            logger.warning("could not send the reply; the request is acked all the same", metadata: ["reply_to": "\(replyTo)", "error": "\(error)"])
        }
    }

    /// Copies the command to the dead-letter queue with `x-error` (confirmed) and acks it; if the
    /// copy cannot be made (too large for a frame once `x-error` is added, or refused), rejects
    /// it so that the broker dead-letters the original itself. Throws only if the connection is
    /// gone, when the broker redelivers it.
    private func park(_ delivery: AMQPDelivery, reason: ServiceError, on channel: AMQPChannel, logger: Logger) async throws {
        let properties = delivery.properties.deadLettered(error: reason.message, originalRoutingKey: delivery.routingKey)
        do {
            try await DeadLettering.publishCopy(of: delivery, to: deadLetterQueue, properties: properties, on: channel)
            try delivery.ack()
        } catch let error as AMQPError where Self.isConnectionFailure(error) {
            throw error
        } catch {
            logger.warning("could not copy an invalid command to the dead-letter queue; rejecting it so the broker parks it", metadata: ["error": "\(error)"])
            try delivery.reject(requeue: false)
        }
        Counter(label: "warren_dead_lettered_total", dimensions: [("queue", queue)]).increment()
        logger.warning("parked an invalid command", metadata: ["dlq": "\(deadLetterQueue)", "error": "\(reason.message)"])
    }

    private static func isConnectionFailure(_ error: AMQPError) -> Bool {
        switch error {
        case .connectionLost, .connectionClosed, .staleDelivery, .closed: return true
        default: return false
        }
    }
}
