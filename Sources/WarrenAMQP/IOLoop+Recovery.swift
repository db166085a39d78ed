import Logging

/// What a recovery does on the wire; `ConnectionStateMachine` and `RecoveryStateMachine` decide
/// when and in what order.
extension IOLoop {
    /// The connection is lost and will recover: pending confirms fail, consumers are told they
    /// are interrupted (and kept), the socket is forgotten.
    func interruptChannels(_ error: AMQPError) {
        logger.warning("connection to the broker lost", metadata: ["error": "\(error)"])
        status.setConnected(false)
        for state in channels.values {
            state.handle.advanceEpoch()
            state.acks.reset()
            execute(state.machine.connectionLost(error, recovering: true))
        }
        destroyConnection()
        lostError = nil
    }

    /// Declares the recorded topology again, then reopens channels and re-registers consumers,
    /// as `RecoveryStateMachine` orders; throws when the new connection fails too.
    func restore() throws(AMQPError) {
        guard let control = channels[Self.controlChannel] else { return }
        let restored = channels.filter { $0.key != Self.controlChannel }
        var recovery = RecoveryStateMachine(
            entries: topology.entries,
            channels: restored.map { number, state in
                .init(number: number, consumers: state.machine.consumers.values.sorted { $0.tag < $1.tag })
            })
        // A refusal closes the channel: the recovery, not the close, decides who ends.
        for state in restored.values { state.machine.isRestoringConsumers = true }
        defer { for state in restored.values { state.machine.isRestoringConsumers = false } }
        var action = recovery.start()
        while true {
            switch action {
            case .declare(let entry):
                do {
                    try ensureOpen(control)
                    try declare(entry, on: Self.controlChannel)
                    action = recovery.declared()
                } catch {
                    action = recovery.declareFailed(error)
                }
            case .pause(let duration):
                waitForWake(duration)
                action = recovery.pauseEnded()
            case .skip(let entry, let error):
                logger.error("could not restore topology", metadata: ["entry": "\(entry)", "error": "\(error)"])
                action = recovery.skipped()
            case .reopen(let number):
                guard let state = restored[number] else {
                    action = recovery.failed(.protocolError("channel \(number) vanished during recovery"))
                    continue
                }
                _ = state.machine.restoringConsumers()  // the new channel has none yet
                do {
                    try ensureOpen(state)
                    action = recovery.channelOpened()
                } catch {
                    action = recovery.failed(error)
                }
            case .startConsumer(let number, let consumer):
                guard let state = restored[number] else {
                    action = recovery.failed(.protocolError("channel \(number) vanished during recovery"))
                    continue
                }
                do {
                    try startConsumer(consumer, on: state)
                    action = recovery.consumerStarted()
                } catch {
                    action = recovery.consumerFailed(error)
                }
            case .endConsumer(_, let consumer, let error):
                logger.error("could not restore a consumer", metadata: ["queue": "\(consumer.queue)", "error": "\(error)"])
                consumer.handler(.ended(error))
                action = recovery.consumerEnded()
            case .done:
                return
            case .abort(let error, let number, let keep):
                // The connection failed again: keep every consumer for the next attempt.
                if let number, let state = restored[number] { state.machine.keepConsumers(keep) }
                throw error
            }
        }
    }
}
