public import WarrenAMQP
public import WarrenContract

/// What a consumer of one queue does; `ConsumerService` does the rest, the same for every
/// consumer: the channels and their closing, the prefetch, the consumer and its restart when
/// the broker cancels it, `/health`, and the drain on graceful shutdown. Warren's strategies:
/// `RPCResponder` (reply: request/reply) and `EventSubscriber` (subscribe: events with retry
/// queues and a dead-letter queue), each through `InternalStrategy`, and the event store's
/// ingestor (batches).
///
/// A strategy acks or rejects each delivery itself, after its effects: whatever it leaves
/// unacked goes back to the queue when the channel closes.
public protocol ConsumerStrategy: Sendable {
    /// What the strategy opened for one run of the consumer (its side channels), handed to
    /// each `handle`; closed by `ConsumerService` with the channels.
    associatedtype Session: Sendable

    /// The queue consumed.
    var queue: String { get }
    /// Unacked deliveries the broker sends ahead (`basic.qos`).
    var prefetch: UInt16 { get }
    /// One delivery at a time per handler, or batches.
    var delivery: ConsumerDelivery { get }

    /// Declares the topology (on `channels.consuming` or a side channel) and opens the side
    /// channels handling needs (`channels.open()`), before the consumer starts. Runs again
    /// after the broker cancelled the consumer (its queue deleted).
    func open(_ channels: ConsumerChannels) async throws -> Session
    /// The consumer started: the strategy's log line (tests and operators wait for it).
    func consuming(_ session: Session)
    /// Handles one delivery (`.each`): acks, replies, retries or parks it.
    func handle(_ delivery: AMQPDelivery, in session: Session) async
    /// Handles a batch (`.batches`), in order; by default one delivery after the other.
    func handle(batch: [AMQPDelivery], in session: Session) async
}

extension ConsumerStrategy {
    public func handle(batch: [AMQPDelivery], in session: Session) async {
        for delivery in batch { await handle(delivery, in: session) }
    }
}

/// How a consumer takes its deliveries.
public enum ConsumerDelivery: Sendable, Equatable {
    /// Each delivery to a handler of its own, at most `concurrency` at once (1 keeps the
    /// queue's order), run on `executor`. Graceful shutdown waits at most `drainTimeout` for
    /// the handlers running, then cancels them (their deliveries, unacked, are redelivered).
    case each(concurrency: Int, drainTimeout: Duration, executor: HandlerExecutor)
    /// Whatever arrived while the previous batch was handled, up to `upTo` deliveries, in order
    /// (a store that writes a batch in one transaction and acks it with one multiple-ack).
    /// Graceful shutdown lets the batches already delivered be handled.
    case batches(upTo: Int)
}

/// Where a consumer's handlers run (`HANDLER_EXECUTOR` for a service's responder and subscriber).
public enum HandlerExecutor: String, Sendable, CaseIterable {
    /// The connection's I/O thread (`AMQPConnection.executor`), the default: a delivery reaches
    /// its handler, and the reply and the ack reach the socket, without waking another thread,
    /// which saves about a third of a service's CPU per request. Handlers must not block: while
    /// one runs, the connection reads and sends nothing, not even heartbeats. Awaiting (a
    /// database, another service) is fine; the thread serves the connection meanwhile. A
    /// delivery with a body over `largeBodyBytes` is handled on the shared pool all the same:
    /// decoding 30 MB of JSON held the thread for 20–30 s, past the broker's heartbeat timeout.
    case ioThread = "io-thread"
    /// Swift's shared pool: for handlers that compute for milliseconds or block a thread, and
    /// for a service that should use more cores than one per connection for its handlers.
    case pool

    /// Bodies larger than this (256 KiB, bytes) are handled on the shared pool even with
    /// `ioThread`: such a body takes milliseconds or more to decode, and anyone who may publish
    /// to a queue can send one of up to the broker's `max_message_size`.
    public static let largeBodyBytes = 256 * 1024

    /// `HANDLER_EXECUTOR`: `io-thread` (the default) or `pool`.
    public static func from(environment: [String: String]) throws(ServiceError) -> HandlerExecutor {
        guard let name = environment["HANDLER_EXECUTOR"], !name.isEmpty else { return .ioThread }
        guard let executor = HandlerExecutor(rawValue: name.lowercased()) else {
            throw .invalid("HANDLER_EXECUTOR='\(name)' is neither 'io-thread' nor 'pool'")
        }
        return executor
    }
}

/// The strategy of Warren's own consumers (`RPCResponder`, `EventSubscriber`), made of their
/// methods: each stays a public `Service` whose steps are not part of its public API.
struct InternalStrategy<Session: Sendable>: ConsumerStrategy {
    let queue: String
    let prefetch: UInt16
    let delivery: ConsumerDelivery
    let start: @Sendable (ConsumerChannels) async throws -> Session
    let started: @Sendable (Session) -> Void
    let each: @Sendable (AMQPDelivery, Session) async -> Void

    func open(_ channels: ConsumerChannels) async throws -> Session { try await start(channels) }
    func consuming(_ session: Session) { started(session) }
    func handle(_ delivery: AMQPDelivery, in session: Session) async { await each(delivery, session) }
}
