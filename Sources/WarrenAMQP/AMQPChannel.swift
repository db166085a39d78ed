public import Foundation

/// An AMQP channel: the unit of ordering, prefetch and publisher confirms.
///
/// Use one channel per consumer and one for publishing, so that a channel error on one (which
/// the broker signals by closing it) cannot end the other. A channel the broker closed reopens
/// on its next use with its prefetch and confirm mode; its consumers end with the error.
/// Declarations are recorded and declared again after the connection recovers.
public final class AMQPChannel: Sendable {
    let handle: ChannelHandle

    init(handle: ChannelHandle) { self.handle = handle }

    public var number: UInt16 { handle.number }

    private var jobs: JobQueue { handle.jobs }

    /// Hands every message the broker returns on this channel (a `mandatory` publish no queue
    /// took) to `handler`, on the I/O thread, so callers without confirms learn of it, e.g. an
    /// RPC client failing the call whose correlation id came back. Must return at once.
    public func onReturn(_ handler: @escaping @Sendable (AMQPReturnedMessage) -> Void) async throws {
        let handle = handle
        try await jobs.perform { loop throws(AMQPError) in try loop.setReturnHandler(handle, handler) }
    }

    /// Limits unacknowledged deliveries on this channel's consumers, so a slow consumer is not
    /// flooded and other instances get their share. Restored after recovery.
    public func setPrefetch(_ count: UInt16) async throws {
        let handle = handle
        try await jobs.perform { loop throws(AMQPError) in try loop.setPrefetch(handle, count: count) }
    }

    /// Turns on publisher confirms: from then on `publish` returns only once the broker has taken
    /// responsibility for the message, and throws if it nacked or returned it.
    public func enableConfirms() async throws {
        let handle = handle
        try await jobs.perform { loop throws(AMQPError) in try loop.enableConfirms(handle) }
    }

    public func declareExchange(
        _ name: String, type: String = "direct", durable: Bool = true, autoDelete: Bool = false,
        internal: Bool = false, arguments: AMQPTable = [:]
    ) async throws {
        try WireLimits.checkShortString(name, "exchange name")
        try WireLimits.checkShortString(type, "exchange type")
        try WireLimits.checkTable(arguments, "the arguments")
        let entry = TopologyRecord.Entry.exchange(
            .init(name: name, type: type, durable: durable, autoDelete: autoDelete, internal: `internal`, arguments: arguments))
        try await declare(entry)
    }

    /// Checks that an exchange exists without creating it; throws `channelClosed` 404 if not.
    public func checkExchange(_ name: String) async throws {
        try WireLimits.checkShortString(name, "exchange name")
        let handle = handle
        try await jobs.perform { loop throws(AMQPError) in try loop.declareExchangePassive(handle, name: name) }
    }

    public func deleteExchange(_ name: String, ifUnused: Bool = false) async throws {
        try WireLimits.checkShortString(name, "exchange name")
        let handle = handle
        try await jobs.perform { loop throws(AMQPError) in try loop.deleteExchange(handle, name: name, ifUnused: ifUnused) }
    }

    /// Declares a queue. Arguments carry RabbitMQ's extensions, e.g. `x-dead-letter-exchange`,
    /// `x-message-ttl` or `x-queue-type: quorum`. An empty name lets the broker choose one.
    @discardableResult
    public func declareQueue(
        _ name: String, durable: Bool = true, exclusive: Bool = false, autoDelete: Bool = false,
        arguments: AMQPTable = [:]
    ) async throws -> AMQPQueueInfo {
        try WireLimits.checkShortString(name, "queue name")
        try WireLimits.checkTable(arguments, "the arguments")
        let handle = handle
        let queue = TopologyRecord.Queue(name: name, durable: durable, exclusive: exclusive, autoDelete: autoDelete, arguments: arguments)
        return try await jobs.perform { loop throws(AMQPError) in try loop.declareQueue(handle, queue, passive: false) }
    }

    /// Reads a queue's message and consumer counts without creating it; throws `channelClosed` 404 if missing.
    public func inspectQueue(_ name: String) async throws -> AMQPQueueInfo {
        try WireLimits.checkShortString(name, "queue name")
        let handle = handle
        let queue = TopologyRecord.Queue(name: name, durable: false, exclusive: false, autoDelete: false, arguments: [:])
        return try await jobs.perform { loop throws(AMQPError) in try loop.declareQueue(handle, queue, passive: true) }
    }

    public func bindQueue(_ queue: String, exchange: String, routingKey: String, arguments: AMQPTable = [:]) async throws {
        try Self.checkBinding(queue, exchange, routingKey, arguments)
        try await declare(.binding(.init(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments)))
    }

    public func unbindQueue(_ queue: String, exchange: String, routingKey: String, arguments: AMQPTable = [:]) async throws {
        try Self.checkBinding(queue, exchange, routingKey, arguments)
        let handle = handle
        let binding = TopologyRecord.Binding(queue: queue, exchange: exchange, routingKey: routingKey, arguments: arguments)
        try await jobs.perform { loop throws(AMQPError) in try loop.unbindQueue(handle, binding) }
    }

    /// Deletes a queue and returns how many messages it held.
    @discardableResult
    public func deleteQueue(_ name: String, ifUnused: Bool = false, ifEmpty: Bool = false) async throws -> UInt32 {
        try WireLimits.checkShortString(name, "queue name")
        let handle = handle
        return try await jobs.perform { loop throws(AMQPError) in
            try loop.deleteQueue(handle, name: name, ifUnused: ifUnused, ifEmpty: ifEmpty)
        }
    }

    /// Removes every ready message and returns how many there were.
    @discardableResult
    public func purgeQueue(_ name: String) async throws -> UInt32 {
        try WireLimits.checkShortString(name, "queue name")
        let handle = handle
        return try await jobs.perform { loop throws(AMQPError) in try loop.purgeQueue(handle, name: name) }
    }

    private static func checkBinding(_ queue: String, _ exchange: String, _ routingKey: String, _ arguments: AMQPTable) throws(AMQPError) {
        try WireLimits.checkShortString(queue, "queue name")
        try WireLimits.checkShortString(exchange, "exchange name")
        try WireLimits.checkShortString(routingKey, "routing key")
        try WireLimits.checkTable(arguments, "the arguments")
    }

    /// The largest content header (`AMQPProperties.contentHeaderSize`) a publish on this channel
    /// may carry: the connection's frame size less the frame's own 8 bytes.
    public var maxContentHeaderSize: Int { handle.frameMax - 8 }

    private func checkPublish(exchange: String, routingKey: String, properties: AMQPProperties) throws(AMQPError) {
        try WireLimits.checkShortString(exchange, "exchange name")
        try WireLimits.checkShortString(routingKey, "routing key")
        try WireLimits.checkProperties(properties, frameMax: handle.frameMax)
    }

    private func declare(_ entry: TopologyRecord.Entry) async throws {
        let handle = handle
        try await jobs.perform { loop throws(AMQPError) in try loop.declare(handle, entry) }
    }

    /// Publishes a message. With confirms enabled it returns once the broker confirmed it and
    /// throws `nacked`, or `returned` for a `mandatory` message no queue took. Without confirms
    /// AMQP promises nothing about delivery, so it returns as soon as the I/O thread has the
    /// message (in order with this channel's other work) and a failure is only logged.
    /// Many publishes may be in flight at once.
    public func publish(
        _ body: Data, exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) async throws {
        let handle = handle
        guard handle.confirmMode else {
            if try submitPublish(body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties) {
                await jobs.waitForRoom()
            }
            return
        }
        try checkPublish(exchange: exchange, routingKey: routingKey, properties: properties)
        try await withUnsafeThrowingContinuation { continuation in
            submitConfirmed(body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties, waiter: .task(continuation))
        }
    }

    /// Publishes on a channel with confirms enabled and returns at once; `confirmed` runs when
    /// the broker confirmed the message (`.success`), nacked it, returned it (`mandatory`), or
    /// the connection was lost before it could say (`.failure`: `nacked`, `returned`,
    /// `connectionLost`, …). For streams of publishes whose order matters (a replay): the
    /// messages go out in the order of the calls, and no task waits per message. `confirmed`
    /// runs on the connection's I/O thread, in confirm order (not always publish order: the
    /// broker acks an unroutable message at once): it must only hand the result on.
    public func publish(
        _ body: Data, exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties(), confirmed: @escaping @Sendable (Result<Void, any Error>) -> Void
    ) throws {
        guard handle.confirmMode else { throw AMQPError.invalidArgument("publish(…, confirmed:) needs a channel with confirms enabled") }
        try checkPublish(exchange: exchange, routingKey: routingKey, properties: properties)
        submitConfirmed(body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties, waiter: .callback(confirmed))
    }

    private func submitConfirmed(
        _ body: Data, exchange: String, routingKey: String, mandatory: Bool, properties: AMQPProperties, waiter: ConfirmWaiter
    ) {
        let handle = handle
        jobs.submit(
            Job(
                run: { loop in
                    loop.publish(
                        handle, body: body, exchange: exchange, routingKey: routingKey, mandatory: mandatory,
                        properties: properties, waiter: waiter)
                },
                fail: { waiter.resume(throwing: $0) }, onlyWrites: true))
    }

    /// Publishes without waiting for anything, in order with this channel's other work: for
    /// messages whose fate the caller learns another way (an RPC request: its reply, or its
    /// return when `mandatory` and an `onReturn` handler). Throws only if the connection is closed.
    public func send(
        _ body: Data, exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) throws {
        _ = try submitPublish(body, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: properties)
    }

    /// Queues a publish nobody waits for; returns whether the queue is crowded.
    private func submitPublish(
        _ body: Data, exchange: String, routingKey: String, mandatory: Bool, properties: AMQPProperties
    ) throws -> Bool {
        try checkPublish(exchange: exchange, routingKey: routingKey, properties: properties)
        let handle = handle
        let (accepted, crowded) = jobs.submitReportingCrowding(
            Job(
                run: { loop in
                    loop.publish(
                        handle, body: body, exchange: exchange, routingKey: routingKey, mandatory: mandatory,
                        properties: properties, waiter: nil)
                },
                fail: { _ in }, onlyWrites: true))
        guard accepted else { throw AMQPError.closed }
        return crowded
    }

    /// Starts a consumer. Deliveries arrive in order as an `AsyncSequence`; the consumer survives
    /// reconnects. The sequence ends when the consumer is cancelled, and throws when the broker
    /// cancels it (`consumerCancelled`, e.g. the queue was deleted) or closes the channel.
    /// With `noAck` the broker forgets messages as it sends them (used for direct reply-to).
    public func consume(
        queue: String, noAck: Bool = false, exclusive: Bool = false, arguments: AMQPTable = [:]
    ) async throws -> AMQPConsumer {
        let (stream, continuation) = AsyncThrowingStream<AMQPDelivery, any Error>.makeStream()
        let tag = try await consume(queue: queue, noAck: noAck, exclusive: exclusive, arguments: arguments) { event in
            switch event {
            case .delivery(let delivery): continuation.yield(delivery)
            case .interrupted: break  // the stream carries on after recovery
            case .ended(nil): continuation.finish()
            case .ended(let error?): continuation.finish(throwing: error)
            }
        }
        let handle = handle
        continuation.onTermination = { termination in
            // The sequence was dropped or its task cancelled: stop the broker from sending more.
            if case .cancelled = termination {
                handle.jobs.submit(Job(run: { loop in loop.cancelConsumer(handle, tag: tag) }, fail: { _ in }))
            }
        }
        return AMQPConsumer(stream: stream, tag: tag, channel: handle)
    }

    /// Starts a consumer whose `handler` runs on the connection's I/O thread, one hop closer to
    /// the socket than an `AsyncSequence`. For routing only (e.g. matching replies to waiting
    /// callers): the handler must return at once and never block, or the whole connection stalls.
    /// Returns the consumer tag, for `cancelConsumer`.
    public func consume(
        queue: String, noAck: Bool = false, exclusive: Bool = false, arguments: AMQPTable = [:],
        onIOThread handler: @escaping @Sendable (AMQPConsumerEvent) -> Void
    ) async throws -> String {
        try WireLimits.checkShortString(queue, "queue name")
        try WireLimits.checkTable(arguments, "the arguments")
        let handle = handle
        let tag = "warren-\(handle.number)-\(UUID().uuidString.prefix(8).lowercased())"
        let consumer = ConsumerState(tag: tag, queue: queue, noAck: noAck, exclusive: exclusive, arguments: arguments, handler: handler)
        try await jobs.perform { loop throws(AMQPError) in try loop.consume(handle, consumer: consumer) }
        return tag
    }

    /// Stops a consumer; its handler receives `.ended(nil)`.
    public func cancelConsumer(tag: String) async {
        let handle = handle
        _ = try? await jobs.perform { loop throws(AMQPError) in loop.cancelConsumer(handle, tag: tag) }
    }

    /// Fetches one message (`basic.get`), or nil if the queue is empty. For browsing and tools,
    /// not for steady consumption.
    public func get(queue: String, noAck: Bool = false) async throws -> AMQPDelivery? {
        try WireLimits.checkShortString(queue, "queue name")
        let handle = handle
        return try await jobs.perform { loop throws(AMQPError) in try loop.get(handle, queue: queue, noAck: noAck) }
    }

    /// Closes the channel; its consumers end and unacked deliveries return to their queues.
    public func close() async {
        let handle = handle
        _ = try? await jobs.perform { loop throws(AMQPError) in loop.closeChannel(handle) }
    }
}
