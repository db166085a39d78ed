import Foundation

/// One channel's rules as a value: whether it is open, what must be restored when it reopens
/// (prefetch, confirm mode, consumers), whose confirms are pending, and who is told what when it
/// closes — by this process, by the broker (a channel error) or with the connection. The I/O
/// thread (`IOLoop`) sends the AMQP methods and runs what this returns; `Waiter` is whoever
/// awaits a publish's confirm (`ConfirmWaiter?` there, anything in tests).
struct ChannelStateMachine<Waiter> {
    enum State: Equatable {
        /// Not open: never opened, or closed with the connection. Opens on next use.
        case closed
        /// `channel.open` sent, waiting for `open-ok`.
        case opening
        case open
        /// `channel.close` sent by this process.
        case closing
        /// The broker closed it with this error (a channel error: 404, 406, 403 …); it reopens
        /// on next use.
        case closedByBroker(AMQPError)
    }

    /// What the executor sends after `channel.open-ok`, in order: what a reopened channel must
    /// have again.
    struct Setup: Equatable {
        var prefetchCount: UInt16?
        var confirms: Bool
    }

    /// Who learns that the channel went away, and what: the executor resumes `failedConfirms`
    /// with `error` and tells each of `consumers` `consumerEvent`.
    struct Release {
        var error: AMQPError
        var failedConfirms: [Waiter]
        var consumers: [ConsumerState]
        var consumerEvent: AMQPConsumerEvent?
    }

    /// Where a delivery for a consumer tag goes.
    enum DeliveryRoute {
        case consumer(ConsumerState)
        /// A consumer this process cancelled, in ack mode: hand the message back (requeue).
        case reject
        /// No one: a no-ack consumer's late delivery, or an unknown tag.
        case drop
    }

    private(set) var state: State = .closed
    private(set) var prefetchCount: UInt16?
    private(set) var confirmMode = false
    /// Pending publisher confirms; the publish path records into it in place.
    private(set) var confirms = ConfirmTracker<Waiter>()
    private(set) var consumers: [String: ConsumerState] = [:]
    /// Consumers cancelled by this process whose deliveries may still be on the wire, and whether
    /// they were no-ack: late deliveries of ack-mode consumers are handed back to the broker.
    private(set) var cancelledConsumers: [String: Bool] = [:]
    /// While recovery re-registers consumers, a refusal (which closes the channel) must not end
    /// the others: `RecoveryStateMachine` decides who ends.
    var isRestoringConsumers = false

    var isOpen: Bool { state == .open }

    // MARK: - Opening and closing

    /// Whether `channel.open` must be sent before using the channel.
    var needsOpen: Bool { state != .open }

    /// `channel.open` is about to be sent. Confirms of an earlier incarnation must be resolved
    /// before (the executor reads queued frames first): a new channel numbers from 1.
    mutating func opening() {
        state = .opening
    }

    /// `channel.open-ok` arrived: publishes count from 1 again; returns what to set up.
    mutating func opened() -> Setup {
        state = .open
        confirms.reset()  // every way of closing failed what was pending
        return Setup(prefetchCount: prefetchCount, confirms: confirmMode)
    }

    /// `basic.qos-ok`: remembered for reopening.
    mutating func prefetchSet(_ count: UInt16) { prefetchCount = count }

    /// `confirm.select-ok`: remembered for reopening.
    mutating func confirmsEnabled() { confirmMode = true }

    /// This process closes the channel (`AMQPChannel.close`): everything ends quietly.
    mutating func closing() -> Release {
        state = .closing
        return release(.closed, consumerEvent: .ended(nil), keepConsumers: false)
    }

    /// The broker closed the channel (`channel.close`): pending confirms fail with its reason,
    /// consumers end with it (their deliveries cannot be acked any more) unless recovery is
    /// re-registering them.
    mutating func closedByBroker(_ error: AMQPError) -> Release {
        state = .closedByBroker(error)
        return release(error, consumerEvent: isRestoringConsumers ? nil : .ended(error), keepConsumers: false)
    }

    /// The connection was lost. With recovery, consumers are interrupted and kept for
    /// re-registration; without, they end with the error.
    mutating func connectionLost(_ error: AMQPError, recovering: Bool) -> Release {
        state = .closed
        return recovering
            ? release(error, consumerEvent: .interrupted(error), keepConsumers: true)
            : release(error, consumerEvent: .ended(error), keepConsumers: false)
    }

    /// A recovery attempt failed before this channel was reopened: it stays closed, nobody is
    /// told again.
    mutating func reconnectFailed() {
        state = .closed
    }

    /// The connection is over for good: consumers end (quietly when it was closed on request).
    mutating func connectionFinished(_ error: AMQPError) -> Release {
        state = .closed
        return release(error, consumerEvent: .ended(error == .closed ? nil : error), keepConsumers: false)
    }

    // MARK: - Consumers

    /// `basic.consume-ok`.
    mutating func consumerStarted(_ consumer: ConsumerState) {
        consumers[consumer.tag] = consumer
    }

    /// Recovery starts re-registering: the broker knows none of them on the new channel.
    mutating func restoringConsumers() -> [ConsumerState] {
        defer { consumers = [:] }
        return consumers.values.sorted { $0.tag < $1.tag }
    }

    /// Recovery gave up on this connection: keep the consumers for the next attempt.
    mutating func keepConsumers(_ kept: [ConsumerState]) {
        for consumer in kept { consumers[consumer.tag] = consumer }
    }

    /// This process cancels a consumer: returns it (to be told `.ended(nil)`) and whether
    /// `basic.cancel` must be sent (only on an open channel); its late deliveries are handled
    /// per `route(deliveryFor:)` until `cancelFinished(tag:)`.
    mutating func cancelRequested(tag: String) -> (consumer: ConsumerState, sendCancel: Bool)? {
        guard let consumer = consumers.removeValue(forKey: tag) else { return nil }
        guard isOpen else { return (consumer, false) }
        cancelledConsumers[tag] = consumer.noAck
        return (consumer, true)
    }

    /// `basic.cancel-ok` arrived and the frames queued before it were handled.
    mutating func cancelFinished(tag: String) {
        cancelledConsumers.removeValue(forKey: tag)
    }

    /// The broker cancelled a consumer (`basic.cancel`: its queue was deleted): returns it, to
    /// be told `.ended(consumerCancelled)`.
    mutating func cancelledByBroker(tag: String) -> ConsumerState? {
        consumers.removeValue(forKey: tag)
    }

    func route(deliveryFor tag: String) -> DeliveryRoute {
        if let consumer = consumers[tag] { return .consumer(consumer) }
        return cancelledConsumers[tag] == false ? .reject : .drop
    }

    // MARK: - Publisher confirms

    /// A publish went out. On a confirm channel it waits for its confirm and nil is returned;
    /// otherwise the waiter (if any) is returned, to be resumed at once.
    @inline(__always)
    mutating func published(_ waiter: Waiter, exchange: String, routingKey: String, mandatory: ConfirmTracker<Waiter>.Mandatory?) -> Waiter? {
        guard confirmMode else { return waiter }
        confirms.published(waiter, exchange: exchange, routingKey: routingKey, mandatory: mandatory)
        return nil
    }

    /// `basic.ack` / `basic.nack`: the publishes it settles, in publish order.
    mutating func confirmed(deliveryTag: UInt64, multiple: Bool, ack: Bool) -> [(Waiter, Result<Void, AMQPError>)] {
        confirms.confirmed(deliveryTag: deliveryTag, multiple: multiple, ack: ack)
    }

    /// `basic.return`: on a confirm channel the matching publish fails when its ack comes;
    /// returns whether it was tracked so (else the executor hands it to a return handler or logs).
    mutating func returned(exchange: String, routingKey: String, body: Data, code: UInt16, text: String) -> Bool {
        guard confirmMode else { return false }
        confirms.returned(exchange: exchange, routingKey: routingKey, body: body, code: code, text: text)
        return true
    }

    // MARK: - Helpers

    private mutating func release(_ error: AMQPError, consumerEvent: AMQPConsumerEvent?, keepConsumers: Bool) -> Release {
        let failed = confirms.failAll()
        let told = consumers.values.sorted { $0.tag < $1.tag }
        if !keepConsumers { consumers = [:] }
        cancelledConsumers = [:]
        return Release(error: error, failedConfirms: failed, consumers: consumerEvent == nil ? [] : told, consumerEvent: consumerEvent)
    }
}
