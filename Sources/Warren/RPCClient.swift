public import Foundation
public import Logging
import Metrics
public import ServiceLifecycle
import Synchronization
public import Tracing
public import WarrenAMQP
import WarrenContract

/// Calls operations of other services over RabbitMQ: one per process, shared by all tasks.
///
/// Requests go to `<service>.rpc` (the operation's prefix: `users.get` → `users.rpc`) with
/// `reply_to` set to RabbitMQ's direct reply-to and a correlation id; replies are matched on the
/// I/O thread. Every call has a deadline, sent as header `x-deadline` and as the message's
/// `expiration`, so a request nobody took in time dies in the queue.
///
/// Errors tell the truth about whether the request ran: `unavailable` only when it certainly
/// did not (the queue is missing, so the broker returned the mandatory request; or the
/// connection was down before the publish — answered at once, not at the deadline). When the
/// outcome is unknown the error is `timeout`: at the deadline; when the queue has no consumer
/// (checked once a call has waited `probeAfter`: the request stays queued until its deadline
/// and runs if an instance starts before then); and when the connection drops while waiting
/// for the reply. A retry with the same `message_id` is then safe for commands (the service's
/// command inbox answers it if it ran).
///
/// Deadlines and probes are kept by `run()`: the client is a `Service` that sleeps until the
/// earliest deadline or probe of the calls waiting (woken when a call with an earlier one is
/// added), so an idle client costs nothing. Run it for as long as calls are made (in the
/// process's `ServiceGroup`, or `async let _ = client.run()` for a scope); without it a call
/// whose reply never comes is not failed at its deadline.
public final class RPCClient: Service, Sendable {
    public struct Configuration: Sendable {
        public var defaultTimeout: Duration
        /// How long a call waits for its reply before the client checks that someone consumes
        /// the queue at all. Short enough to report a stopped service well under the deadline.
        public var probeAfter: Duration

        public init(defaultTimeout: Duration = .seconds(5), probeAfter: Duration = .milliseconds(200)) {
            self.defaultTimeout = defaultTimeout
            self.probeAfter = probeAfter
        }
    }

    /// A reply as it came: `isError` from header `x-status`, the JSON body untouched, so a
    /// gateway can forward it without decoding.
    public struct Reply: Sendable {
        public let isError: Bool
        public let body: Data
        public let properties: AMQPProperties
    }

    /// What a pending call runs with its outcome, on the thread that has it (the I/O thread, the
    /// deadline task or the caller): a closure rather than a continuation, so a caller that is
    /// not a task (the gateway's event loop) waits without one.
    typealias Waiter = @Sendable (Result<Reply, ServiceError>) -> Void

    /// The calls waiting and what `run()` sleeps until, under one lock: adding a call with an
    /// earlier deadline or probe than the one `run()` sleeps until wakes it.
    struct State {
        var calls = PendingCalls<Waiter>()
        var schedule = DeadlineSchedule()
    }

    public let configuration: Configuration
    private let connection: AMQPConnection
    private let channel: AMQPChannel
    private let probeChannel: AMQPChannel
    private let state = Mutex(State())
    private let lateReplyCount = Atomic<Int>(0)
    private let logger: Logger
    private let callCounts = MetricHandles(counter: "warren_rpc_calls_total", "operation", "outcome")
    private let durations = MetricHandles(timer: "warren_rpc_call_duration_seconds", "operation")

    private init(connection: AMQPConnection, channel: AMQPChannel, probeChannel: AMQPChannel, configuration: Configuration, logger: Logger) {
        self.connection = connection
        self.channel = channel
        self.probeChannel = probeChannel
        self.configuration = configuration
        self.logger = logger
    }

    /// Opens the client's channels and its reply consumer.
    public static func start(
        connection: AMQPConnection, configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "warren.rpc")
    ) async throws -> RPCClient {
        let client = RPCClient(
            connection: connection, channel: try await connection.openChannel(), probeChannel: try await connection.openChannel(),
            configuration: configuration, logger: logger)
        try await client.channel.onReturn { [weak client] returned in client?.returned(returned) }
        // Direct reply-to must be consumed (no-ack) on the channel that publishes the requests.
        _ = try await client.channel.consume(queue: "amq.rabbitmq.reply-to", noAck: true) { [weak client] event in
            client?.replyEvent(event)
        }
        return client
    }

    /// Fails calls at their deadline and probes the queues of calls waiting longer than
    /// `probeAfter`, sleeping in between until the earliest of them. Returns at graceful
    /// shutdown, on cancellation or after `close()`; calls still waiting then fail (`timeout`:
    /// they were sent, the outcome is unknown) and later calls fail at once (`unavailable`).
    public func run() async {
        await withGracefulShutdownHandler {
            // Probes run as child tasks, so that a slow broker answer never holds up a deadline.
            await withDiscardingTaskGroup { group in
                while !Task.isCancelled, !Task.isShuttingDownGracefully {
                    let now = ContinuousClock.now
                    let (expired, probes, wakeAt, stopped) = state.withLock { state in
                        let expired = state.calls.expire(now: now)
                        let probes = state.calls.queuesToProbe(now: now)
                        let wakeAt = state.schedule.sleep(until: state.calls.nextEvent)
                        return (expired, probes, wakeAt, state.schedule.stopped)
                    }
                    for call in expired {
                        Counter(label: "warren_rpc_timeouts_total").increment()
                        call.waiter(.failure(.timeout("no reply from \(call.queue) before the deadline")))
                    }
                    for queue in probes {
                        group.addTask { await self.probe(queue) }
                    }
                    if stopped { break }
                    await sleep(until: wakeAt)
                }
            }
        } onGracefulShutdown: {
            self.stop()
        }
        stop()
    }

    /// Sleeps until `instant` (forever when nil), or until a call with an earlier event, `stop()`
    /// or cancellation wakes it.
    private func sleep(until instant: ContinuousClock.Instant?) async {
        await withTaskGroup(of: Void.self) { group in
            if let instant {
                group.addTask { try? await Task.sleep(until: instant, clock: .continuous) }
            }
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                        let wakeNow = self.state.withLock { state in state.schedule.wait(waiter, cancelled: Task.isCancelled) }
                        if wakeNow { waiter.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.schedule.takeWaiter() }?.resume()
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Ends `run()` and fails the calls still waiting: nothing keeps their deadlines any more.
    private func stop() {
        let (waiting, waiter) = state.withLock { state in
            state.schedule.stopped = true
            return (state.calls.removeAll(), state.schedule.takeWaiter())
        }
        waiter?.resume()
        for call in waiting {
            // Sent, and perhaps executed: the outcome is unknown.
            call.waiter(.failure(.timeout("the RPC client was stopped while waiting for \(call.queue): the outcome is unknown")))
        }
    }

    /// Ends `run()` and fails calls still waiting (`timeout`: they were sent); the connection
    /// stays open.
    public func close() async {
        stop()
        await channel.close()
        await probeChannel.close()
    }

    /// Replies that came after their call had given up (timed out); they are dropped.
    public var lateReplies: Int { lateReplyCount.load(ordering: .relaxed) }

    /// Calls `operation` with a JSON body and returns the reply as it came. The envelope's
    /// `messageID` is the request's `message_id` (the key of the service's command inbox: give a
    /// retry of a command the same one). Throws `unavailable` when the request was certainly not
    /// executed, `timeout` when its outcome is unknown (see the type's comment). The client span
    /// is a child of the task's `ServiceContext.current` (the handler's span in a nested call).
    public func call(
        _ operation: String, body: Data, timeout: Duration? = nil, envelope: Envelope = Envelope()
    ) async throws(ServiceError) -> Reply {
        let context = MessageTracing.isEnabled ? ServiceContext.current : nil
        let result = await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Reply, ServiceError>, Never>) in
            call(operation, body: body, timeout: timeout, envelope: envelope, context: context) { continuation.resume(returning: $0) }
        }
        return try result.get()
    }

    /// `call` for a caller that is not a task: `completion` gets the outcome exactly once, on the
    /// AMQP I/O thread, the task of `run()` or (when nothing could be sent) at once on the
    /// caller's thread. It must not block. `context` is the caller's trace context (the
    /// gateway's server span); without it the client span starts a trace.
    public func call(
        _ operation: String, body: Data, timeout: Duration? = nil, envelope: Envelope = Envelope(),
        context: ServiceContext? = nil,
        completion: @escaping @Sendable (Result<Reply, ServiceError>) -> Void
    ) {
        let queue = Self.queue(for: operation)
        let timeout = timeout ?? configuration.defaultTimeout
        var envelope = envelope
        envelope.type = operation
        envelope.replyTo = "amq.rabbitmq.reply-to"
        let ownDeadline = Date() + timeout.timeInterval
        let deadline = envelope.deadline.map { min($0, ownDeadline) } ?? ownDeadline
        envelope.deadline = deadline
        envelope.headers[WireHeader.correlationID] = .string(envelope.correlationID)
        // The client span: a child of the caller's span (the gateway's, or the handler's that
        // makes a nested call); the responder's span becomes its child across the broker.
        let span = MessageTracing.startSpan("send \(operation)", context: context ?? .topLevel, ofKind: .client)
        span?.setMessagingAttributes(operation: "send", operationType: "send", destination: queue, routingKey: queue, envelope: envelope)
        if let span, let traceparent = MessageTracing.traceparent(of: span.context) {
            envelope.traceparent = traceparent
        }
        var properties = envelope.properties()
        // Clamped to 1 ms … 1 day before the conversion: a deadline from a request may say anything.
        let milliseconds = (deadline.timeIntervalSinceNow * 1000).rounded(.up)
        let remaining = milliseconds.isFinite ? Int(min(max(milliseconds, 1), 86_400_000)) : 1
        properties.expiration = String(remaining)

        let messageID = envelope.messageID
        let started = ContinuousClock.now
        let call = (queue: queue, deadline: started + .milliseconds(remaining), probeAt: started + configuration.probeAfter)
        guard connection.isConnected else {
            // Nothing was sent: certainly not executed, and no reason to wait for the deadline.
            let failure = ServiceError.unavailable("not connected to the message broker: \(operation) was not sent")
            callCounts(operation, failure.code.rawValue).increment()
            span?.recordServiceError(failure)
            span?.end()
            completion(.failure(failure))
            return
        }
        let waiter: Waiter = { [callCounts, durations] result in
            let outcome: String
            switch result {
            case .success(let reply):
                outcome = reply.isError ? "error" : "ok"
                if reply.isError { span?.setStatus(.init(code: .error, message: "error reply")) }
            case .failure(let error):
                outcome = error.code.rawValue
                span?.recordServiceError(error)
            }
            span?.end()
            callCounts(operation, outcome).increment()
            durations(operation).recordNanoseconds(Int64((ContinuousClock.now - started) / .nanoseconds(1)))
            completion(result)
        }
        // The AMQP correlation id matches this reply to this call, so it must be unique even
        // when one flow makes several calls at once, or a client retries a command with the
        // same message id while the first call still waits; the flow's id travels in
        // `x-correlation-id`.
        let (callID, wake, stopped) = state.withLock { state -> (String, CheckedContinuation<Void, Never>?, Bool) in
            if state.schedule.stopped { return ("", nil, true) }
            let id = state.calls.contains(messageID) ? UUID().uuidString.lowercased() : messageID
            state.calls.add(id, .init(waiter: waiter, queue: call.queue, deadline: call.deadline, probeAt: call.probeAt))
            // Only a call due before what `run()` sleeps until wakes it: with one timeout for
            // all calls, that is the first call after an idle spell, not every call.
            return (id, state.schedule.added(min(call.deadline, call.probeAt)), false)
        }
        wake?.resume()
        if stopped {
            // Nothing was sent: certainly not executed.
            waiter(.failure(.unavailable("the RPC client is stopped: \(operation) was not sent")))
            return
        }
        properties.correlationID = callID
        do {
            try channel.send(body, routingKey: queue, mandatory: true, properties: properties)
        } catch {
            let failure: ServiceError
            if case .invalidArgument(let detail) = error as? AMQPError {
                failure = .invalid(detail)
            } else {
                failure = .unavailable("not connected to the message broker")
            }
            if let pending = state.withLock({ $0.calls.complete(callID) }) {
                pending.waiter(.failure(failure))
            }
        }
    }

    /// Calls `operation` with a typed request and decodes the typed response; an error reply
    /// is thrown as the `ServiceError` the service sent.
    public func call<Request: Encodable & Sendable, Response: Decodable>(
        _ operation: String, _ request: Request, as response: Response.Type = Response.self,
        timeout: Duration? = nil, envelope: Envelope = Envelope()
    ) async throws(ServiceError) -> Response {
        let body: Data
        do {
            body = try WireJSON.encode(request)
        } catch {
            throw .internal("could not encode the request for \(operation)")
        }
        let reply = try await call(operation, body: body, timeout: timeout, envelope: envelope)
        return try reply.decode(Response.self, operation: operation)
    }

    /// What a call fails with when its reply has no valid `x-status` (`ok` or `error`): an
    /// `internal` error, since the request may have run, that `isInvalidStatus` recognises.
    public static func invalidStatus(queue: String) -> ServiceError {
        .internal("\(queue)\(invalidStatusText)")
    }

    /// Whether `error` is `invalidStatus(queue:)`'s: the service broke the reply format (a
    /// gateway answers it 502, not as an error the service reported).
    public static func isInvalidStatus(_ error: ServiceError) -> Bool {
        error.code == .internal && error.message.hasSuffix(invalidStatusText)
    }

    private static let invalidStatusText = " replied without a valid x-status header (ok or error): the request may have run"

    /// The queue that serves an operation: `users.get` → `users.rpc`.
    public static func queue(for operation: String) -> String {
        QueueName.serving(operation: operation).name
    }

    // MARK: - Events from the I/O thread and the deadline task

    private func replyEvent(_ event: AMQPConsumerEvent) {
        switch event {
        case .delivery(let delivery):
            guard let id = delivery.properties.correlationID, let call = state.withLock({ $0.calls.complete(id) }) else {
                lateReplyCount.add(1, ordering: .relaxed)
                Counter(label: "warren_rpc_late_replies_total").increment()
                logger.debug("dropped a reply nobody waits for (late or unknown)", metadata: ["correlation_id": "\(delivery.properties.correlationID ?? "-")"])
                return
            }
            // `x-status` is `ok` or `error` (schemas/): a reply with neither is not taken for
            // either, so an error can never pass as a success (the request may have run).
            switch delivery.properties.headers?[WireHeader.status]?.stringValue {
            case "ok": call.waiter(.success(Reply(isError: false, body: delivery.body, properties: delivery.properties)))
            case "error": call.waiter(.success(Reply(isError: true, body: delivery.body, properties: delivery.properties)))
            default:
                logger.warning(
                    "a reply without a valid x-status (ok or error)",
                    metadata: ["queue": "\(call.queue)", "correlation_id": "\(id)", "x_status": "\(delivery.properties.headers?[WireHeader.status].map { String("\($0)".prefix(64)) } ?? "-")"])
                call.waiter(.failure(Self.invalidStatus(queue: call.queue)))
            }
        case .interrupted, .ended:
            // Replies to the old direct reply-to address can never arrive. The requests may have
            // been executed (or may still be): the outcome is unknown, which is not `unavailable`.
            for call in state.withLock({ $0.calls.removeAll() }) {
                call.waiter(
                    .failure(
                        .timeout(
                            "the connection to the message broker was lost while waiting for \(call.queue): the request may have been executed; the outcome is unknown (retry with the same message_id)"
                        )))
            }
        }
    }

    private func returned(_ message: AMQPReturnedMessage) {
        guard let id = message.properties.correlationID, let call = state.withLock({ $0.calls.complete(id) }) else { return }
        call.waiter(.failure(.unavailable("no service serves \(message.routingKey): the queue does not exist")))
    }

    /// A call has waited a while: if requests sit in its queue and nobody consumes it, no reply
    /// will come in time. (No consumer but an empty queue means the request was taken, e.g. by
    /// an instance draining on shutdown, which still answers.) The request stays queued until
    /// its `expiration` and runs if an instance starts before then: its outcome is unknown.
    private func probe(_ queue: String) async {
        let info: AMQPQueueInfo
        do {
            info = try await probeChannel.inspectQueue(queue)
        } catch {
            return
        }
        guard info.consumerCount == 0, info.messageCount > 0 else { return }
        for call in state.withLock({ $0.calls.removeAll(queue: queue) }) {
            call.waiter(
                .failure(
                    .timeout(
                        "no instance of the service is consuming \(queue): the request waits there until its deadline and runs if an instance starts before then, so its outcome is unknown (retry with the same message_id)"
                    )))
        }
    }
}

extension RPCClient.Reply {
    /// Decodes an ok reply as `Response`, or throws the error reply's `ServiceError`.
    public func decode<Response: Decodable>(_ type: Response.Type, operation: String) throws(ServiceError) -> Response {
        if isError { throw serviceError(operation: operation) }
        do {
            return try WireJSON.decodeTrusted(Response.self, from: body)
        } catch {
            throw .internal("\(operation) replied with a body that does not match its contract")
        }
    }

    /// The `ServiceError` an error reply carries (`{"error":{"code","message"}}`); `internal`
    /// when the body is not in that format.
    public func serviceError(operation: String) -> ServiceError {
        ErrorReply.decode(body, operation: operation)
    }
}
