/// The life of one AMQP connection as a value: the I/O thread (`IOLoop`) tells it what happened
/// and runs the `Action` it returns, so every decision — which node next, when to pause, when to
/// give up, when a recovery is flapping — can be tested without a socket, in microseconds.
///
/// The first connection tries each node once and fails with what the nodes said; a refused
/// login is the same on every node of a cluster, so it fails at once. A connection that was up
/// and is lost recovers (when `recovery.isEnabled`): rounds of every node once, from the node
/// after the one lost, with a jittered, capped backoff between rounds (`NodeRotation`), until a
/// node takes it and the topology, channels and consumers are restored, or close is requested.
/// Without recovery, a lost connection finishes with its error (and `AMQPConnection.run` throws).
struct ConnectionStateMachine {
    enum State: Equatable {
        /// Not started.
        case initialized
        /// The first connection: `tried` nodes failed so far.
        case connecting(tried: Int)
        /// Logged in and serving.
        case open
        /// Lost and getting back (see `Recovery`).
        case recovering(Recovery)
        /// Close requested: queued work runs, then the socket closes.
        case closing
        /// Over: the I/O thread exits. `.closed` when closed on request.
        case finished(AMQPError)
    }

    /// Where a recovery stands.
    struct Recovery: Equatable {
        enum Phase: Equatable {
            /// Consumers interrupted, confirms failed, socket gone: the next step is a node.
            case releasing
            /// A node is being tried.
            case connecting
            /// Socket up again: topology, channels and consumers are being restored.
            case restoring
            /// Between rounds (or before the first, when flapping).
            case pausing
        }

        var phase: Phase
        /// The node that was lost, for the log.
        let lost: AMQPConfiguration.Endpoint
        /// Attempts so far, over all rounds (1 for the first node tried).
        var attempt = 0
        /// Nodes tried in this round.
        var triedThisRound = 0
        /// Rounds that failed, counting from `startingRound` (which sizes the backoff).
        var round: Int
        /// The round this recovery started at (> 0 when the last recovery did not last).
        let startingRound: Int
    }

    enum Action: Equatable {
        /// Open a socket to the node, log in and open the control channel; then report
        /// `connected()` or `connectFailed(_:)`.
        case connect(AMQPConfiguration.Endpoint)
        /// Poll and run jobs until close is requested (`closeRequested()`) or the connection is
        /// lost (`connectionLost(_:now:)`). `recovered` says whom to tell first.
        case serve(Served)
        /// The connection was lost and will recover: fail pending confirms, interrupt consumers
        /// (they stay registered), forget the socket; then report `channelsReleased()`.
        case interruptChannels(AMQPError)
        /// Wait (woken early by a close request), then report `pauseEnded()`.
        case pause(Duration, Pause)
        /// Declare the recorded topology again, reopen channels, re-register consumers
        /// (`RecoveryStateMachine`); then report `restored(now:)` or `restoreFailed(_:)`.
        case restore
        /// Run queued work, let confirms on the wire arrive, close the socket; then report
        /// `closedGracefully()`.
        case closeGracefully
        /// The end: fail what is pending with the error (consumers end with nil for `.closed`),
        /// refuse new jobs, let the thread exit. A first connection that never came up fails
        /// `AMQPConnection.connect` with it.
        case finish(AMQPError)
    }

    enum Served: Equatable {
        /// The first connection is up: `AMQPConnection.connect` returns.
        case connected
        /// A recovery succeeded, after `attempt` attempts, on `node`; `lost` was the node lost.
        case recovered(attempt: Int, node: AMQPConfiguration.Endpoint, lost: AMQPConfiguration.Endpoint)
    }

    enum Pause: Equatable {
        /// Lost again right after a recovery: wait before the first attempt.
        case flapping
        /// Every node failed in this round; `nextRound` is the round after the pause (1-based).
        case betweenRounds(nextRound: Int)
    }

    /// What a broker's `connection.blocked` / `unblocked` changes.
    enum FlowAction: Equatable {
        /// Publishing is blocked (a memory or disk alarm): say so once.
        case block
        case unblock
        /// Nothing changed (repeated, or not connected).
        case ignore
    }

    private(set) var state: State = .initialized
    private(set) var rotation: NodeRotation
    /// Between the broker's `connection.blocked` and `connection.unblocked`.
    private(set) var isBlocked = false
    /// Failures of the first connection, per node, for the error that ends it.
    private var failures: [String] = []
    /// When the last recovery succeeded and the round it started at (see `NodeRotation.startingRound`).
    private var lastRecovery: (at: ContinuousClock.Instant, round: Int)?
    let recovery: AMQPConfiguration.Recovery
    /// A uniform draw in 0..<1 for the backoff's jitter; fixed in tests.
    private let jitter: () -> Double

    init(rotation: NodeRotation, recovery: AMQPConfiguration.Recovery, jitter: @escaping () -> Double = { Double.random(in: 0..<1) }) {
        self.rotation = rotation
        self.recovery = recovery
        self.jitter = jitter
    }

    // MARK: - Events

    /// The I/O thread starts: try the first node.
    mutating func start() -> Action {
        guard case .initialized = state else { preconditionFailure("start() once") }
        state = .connecting(tried: 0)
        return .connect(rotation.current)
    }

    /// The socket is up, logged in, the control channel open.
    mutating func connected() -> Action {
        switch state {
        case .connecting:
            state = .open
            isBlocked = false
            return .serve(.connected)
        case .recovering(var recovering) where recovering.phase == .connecting:
            recovering.phase = .restoring
            state = .recovering(recovering)
            isBlocked = false  // a new connection starts unblocked
            return .restore
        default:
            preconditionFailure("connected() in \(state)")
        }
    }

    /// Connecting to the current node failed (the socket, the login or the control channel).
    mutating func connectFailed(_ error: AMQPError) -> Action {
        switch state {
        case .connecting(let tried):
            let node = rotation.current
            if case .authenticationFailed = error { return finish(error) }
            failures.append("\(node): \(error)")
            rotation.advance()
            guard tried + 1 < rotation.endpoints.count else {
                guard failures.count > 1 else { return finish(error) }
                let first = rotation.current
                return finish(.connectionRefused(host: first.host, port: first.port, reason: "no node answered: \(failures.joined(separator: "; "))"))
            }
            state = .connecting(tried: tried + 1)
            return .connect(rotation.current)
        case .recovering(var recovering) where recovering.phase == .connecting || recovering.phase == .restoring:
            rotation.advance()
            guard recovering.triedThisRound < rotation.endpoints.count else {
                let pause = NodeRotation.backoff(
                    afterRound: recovering.round, initial: recovery.initialBackoff, maximum: recovery.maxBackoff, fraction: jitter())
                recovering.round += 1
                recovering.phase = .pausing
                state = .recovering(recovering)
                return .pause(pause, .betweenRounds(nextRound: recovering.round - recovering.startingRound + 1))
            }
            return attempt(&recovering)
        default:
            preconditionFailure("connectFailed(_:) in \(state)")
        }
    }

    /// Restoring failed as the connection failed again: like a failed connect, the next node.
    mutating func restoreFailed(_ error: AMQPError) -> Action {
        connectFailed(error)
    }

    /// Topology, channels and consumers are back: serve again.
    mutating func restored(now: ContinuousClock.Instant) -> Action {
        guard case .recovering(let recovering) = state, recovering.phase == .restoring else {
            preconditionFailure("restored(now:) in \(state)")
        }
        state = .open
        lastRecovery = (now, recovering.startingRound)
        return .serve(.recovered(attempt: recovering.attempt, node: rotation.current, lost: recovering.lost))
    }

    /// Serving ended: the socket failed, a heartbeat was missed, or the broker closed the
    /// connection (`connection.close`, e.g. 320 on a node shutting down).
    mutating func connectionLost(_ error: AMQPError, now: ContinuousClock.Instant) -> Action {
        guard case .open = state else { preconditionFailure("connectionLost(_:now:) in \(state)") }
        isBlocked = false
        guard recovery.isEnabled else { return finish(error) }
        let round = NodeRotation.startingRound(previous: lastRecovery?.round ?? 0, upFor: lastRecovery.map { $0.at.duration(to: now) })
        state = .recovering(Recovery(phase: .releasing, lost: rotation.current, round: round, startingRound: round))
        rotation.advance()  // the node lost comes last
        return .interruptChannels(error)
    }

    /// The lost connection's channels are released: try the next node, or pause first when
    /// the connection did not last after the previous recovery.
    mutating func channelsReleased() -> Action {
        guard case .recovering(var recovering) = state, recovering.phase == .releasing else {
            preconditionFailure("channelsReleased() in \(state)")
        }
        guard recovering.round == 0 else {
            let pause = NodeRotation.backoff(
                afterRound: recovering.round - 1, initial: recovery.initialBackoff, maximum: recovery.maxBackoff, fraction: jitter())
            recovering.phase = .pausing
            state = .recovering(recovering)
            return .pause(pause, .flapping)
        }
        return attempt(&recovering)
    }

    /// A pause is over (or a close request woke it; the executor reports that first).
    mutating func pauseEnded() -> Action {
        guard case .recovering(var recovering) = state, recovering.phase == .pausing else {
            preconditionFailure("pauseEnded() in \(state)")
        }
        recovering.triedThisRound = 0
        return attempt(&recovering)
    }

    /// `AMQPConnection.close()` (or `run()`'s graceful shutdown): while serving, close cleanly;
    /// while recovering, stop at once — there is nothing on the wire to wait for.
    mutating func closeRequested() -> Action {
        switch state {
        case .open:
            state = .closing
            return .closeGracefully
        case .closing:
            return .closeGracefully
        case .finished(let error):
            return .finish(error)
        case .initialized, .connecting, .recovering:
            return finish(.closed)
        }
    }

    /// The socket is closed after a close request.
    mutating func closedGracefully() -> Action {
        finish(.closed)
    }

    /// The broker's `connection.blocked` (true) or `connection.unblocked` (false).
    mutating func brokerBlocked(_ blocked: Bool) -> FlowAction {
        guard case .open = state, blocked != isBlocked else { return .ignore }
        isBlocked = blocked
        return blocked ? .block : .unblock
    }

    // MARK: - Pure rules of serving

    /// How long one poll may sleep, in milliseconds: a quarter of the negotiated heartbeat
    /// (librabbitmq sends and checks heartbeats only when it reads), at least 50 ms; a second
    /// when heartbeats are off.
    static func pollInterval(heartbeatSeconds: Int) -> Int32 {
        guard heartbeatSeconds > 0 else { return 1000 }
        let (milliseconds, overflow) = heartbeatSeconds.multipliedReportingOverflow(by: 250)
        return overflow ? .max : Int32(clamping: max(50, milliseconds))
    }

    /// Whether to read after a poll: on a timeout (heartbeats are sent and checked by reading),
    /// when the socket is readable, or when the last read is older than a poll interval (jobs
    /// kept waking the thread up).
    static func mustRead(pollTimedOut: Bool, socketReadable: Bool, sinceLastRead: Duration, pollInterval: Int32) -> Bool {
        pollTimedOut || socketReadable || sinceLastRead > .milliseconds(Int(pollInterval))
    }

    // MARK: - Helpers

    private mutating func attempt(_ recovering: inout Recovery) -> Action {
        recovering.attempt += 1
        recovering.triedThisRound += 1
        recovering.phase = .connecting
        state = .recovering(recovering)
        return .connect(rotation.current)
    }

    private mutating func finish(_ error: AMQPError) -> Action {
        state = .finished(error)
        isBlocked = false
        return .finish(error)
    }
}
