import CRabbitMQ
import Foundation
import Glibc
import Logging

/// The connection's I/O thread: the only code that calls librabbitmq for this connection, and
/// the executor of its state machines. `ConnectionStateMachine` decides the connection's life
/// (which node, when to pause, when to give up), `ChannelStateMachine` each channel's, and
/// `RecoveryStateMachine` the order of a restore; this class does the I/O they ask for.
///
/// While serving it polls the socket and the job queue's eventfd together (`Poller`), bounded by
/// the heartbeat, runs jobs, and reads and dispatches frames (`IOLoop+Frames.swift`); channel
/// operations are in `IOLoop+ChannelOperations.swift`, the restore in `IOLoop+Recovery.swift`.
final class IOLoop {
    enum Exit {
        case closeRequested
        case lost(AMQPError)
    }

    static let controlChannel: UInt16 = 1
    /// How much longer than the agreed frame_max a frame from the broker may be (`connect`):
    /// room for the headers the broker adds, many times over.
    static let receiveSlack = 64 * 1024

    let configuration: AMQPConfiguration
    let logger: Logger
    let jobs: JobQueue
    let status: ConnectionStatus

    var connection: OpaquePointer?
    var channels: [UInt16: ChannelState] = [:]
    var topology = TopologyRecord()
    let scratch = ScratchPool()
    /// Set by whatever notices the connection failing; the loop acts on it between steps.
    var lostError: AMQPError?
    private var spareJobs: [Job] = []
    private var spareTasks: [UnownedJob] = []
    /// Channels whose `acks` hold acks asked for during the current batch of jobs.
    var channelsWithAcks: Set<UInt16> = []
    private var pollInterval: Int32 = 1000
    var lastRead = ContinuousClock.now
    private var isCorked = false
    /// The frame_max agreed with the broker at login: what every frame this side writes keeps to.
    var frameMax: Int
    var machine: ConnectionStateMachine

    init(configuration: AMQPConfiguration, logger: Logger, jobs: JobQueue, status: ConnectionStatus) {
        self.configuration = configuration
        self.logger = logger
        self.jobs = jobs
        self.status = status
        self.frameMax = configuration.frameMax
        var generator = SystemRandomNumberGenerator()
        self.machine = ConnectionStateMachine(
            rotation: NodeRotation(configuration: configuration, using: &generator), recovery: configuration.recovery)
    }

    /// The thread's body: runs the connection state machine's actions until it finishes.
    /// `ready` learns whether the first connection succeeded; after that the loop runs until
    /// close is requested, or the connection is lost without recovery.
    func run(ready: (Result<Void, AMQPError>) -> Void) {
        var isReady = false
        var action = machine.start()
        while true {
            switch action {
            case .connect(let endpoint):
                if case .recovering = machine.state, jobs.isCloseRequested {
                    action = machine.closeRequested()
                    continue
                }
                do {
                    try connect(to: endpoint)
                    action = machine.connected()
                } catch {
                    connectFailed(error, node: endpoint)
                    action = machine.connectFailed(error)
                }
            case .serve(let served):
                switch served {
                case .connected:
                    isReady = true
                    ready(.success(()))
                case .recovered(let attempt, let node, let lost):
                    status.recovered()
                    logger.info("connection to the broker recovered", metadata: ["attempt": "\(attempt)", "node": "\(node)", "lost_node": "\(lost)"])
                }
                switch serve() {
                case .closeRequested: action = machine.closeRequested()
                case .lost(let error): action = machine.connectionLost(error, now: .now)
                }
            case .interruptChannels(let error):
                interruptChannels(error)
                action = machine.channelsReleased()
            case .pause(let duration, let reason):
                switch reason {
                case .flapping:
                    logger.info("connection lost again right after recovering; pausing first", metadata: ["backoff": "\(duration)"])
                case .betweenRounds(let round):
                    logger.debug("no node answered; pausing before the next round", metadata: ["round": "\(round)", "backoff": "\(duration)"])
                }
                waitForWake(duration)
                action = jobs.isCloseRequested ? machine.closeRequested() : machine.pauseEnded()
            case .restore:
                do {
                    try restore()
                    action = machine.restored(now: .now)
                } catch {
                    connectFailed(error, node: machine.rotation.current)
                    action = machine.restoreFailed(error)
                }
            case .closeGracefully:
                closeGracefully()
                action = machine.closedGracefully()
            case .finish(let error):
                if isReady, error != .closed {
                    logger.warning("connection to the broker lost; recovery is off", metadata: ["error": "\(error)"])
                }
                destroyConnection()
                finish(with: error)
                if !isReady { ready(.failure(error)) }
                return
            }
        }
    }

    /// A connect or restore failed: forget the half-made connection before the next node.
    private func connectFailed(_ error: AMQPError, node: AMQPConfiguration.Endpoint) {
        if case .recovering(let recovery) = machine.state {
            logger.info("reconnect failed; trying the next node", metadata: ["attempt": "\(recovery.attempt)", "node": "\(node)", "error": "\(error)"])
        }
        for state in channels.values { state.machine.reconnectFailed() }
        destroyConnection()
        lostError = nil
    }

    // MARK: - Connecting

    private func connect(to endpoint: AMQPConfiguration.Endpoint) throws(AMQPError) {
        func refused(_ reason: String) -> AMQPError { .connectionRefused(host: endpoint.host, port: endpoint.port, reason: reason) }
        guard let connection = amqp_new_connection() else { throw .protocolError("amqp_new_connection failed") }
        self.connection = connection
        let socket: OpaquePointer?
        if let tls = configuration.tls {
            socket = amqp_ssl_socket_new(connection)
            if let socket {
                amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
                amqp_ssl_socket_set_verify_hostname(socket, tls.verifyHostname ? 1 : 0)
                if let ca = tls.caCertificatePath, amqp_ssl_socket_set_cacert(socket, ca) != AMQP_STATUS_OK.rawValue {
                    throw refused("cannot read the CA certificate \(ca)")
                }
                if let cert = tls.certificatePath, let key = tls.keyPath,
                    amqp_ssl_socket_set_key(socket, cert, key) != AMQP_STATUS_OK.rawValue
                {
                    throw refused("cannot read the client certificate \(cert) or key \(key)")
                }
            }
        } else {
            socket = amqp_tcp_socket_new(connection)
        }
        guard let socket else { throw refused("cannot create a socket") }
        let opened = warren_amqp_socket_open(socket, endpoint.host, Int32(clamping: endpoint.port), microseconds(configuration.connectTimeout))
        guard opened == AMQP_STATUS_OK.rawValue else { throw refused(Self.statusText(opened)) }

        var handshake = timeval(configuration.connectTimeout)
        amqp_set_handshake_timeout(connection, &handshake)
        var rpcTimeout = timeval(configuration.operationTimeout)
        amqp_set_rpc_timeout(connection, &rpcTimeout)

        let reply = warren_amqp_login(
            connection, configuration.vhost, Int32(clamping: configuration.channelMax), Int32(clamping: configuration.frameMax),
            Int32(clamping: configuration.heartbeat.components.seconds), configuration.user, configuration.password,
            configuration.connectionName)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            break
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            let (code, text) = Self.closeReason(reply.reply)
            throw code == 403 || code == 530
                ? .authenticationFailed(user: configuration.user, vhost: configuration.vhost, reason: "\(code) \(text)")
                : .connectionClosed(code: code, text: text)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_CONNECTION_CLOSED.rawValue:
            // Bad credentials come as connection.close 403 (we announce
            // authentication_failure_close); a bare close is the network or the broker going away.
            throw refused("the connection closed during login")
        default:
            throw refused("login failed: \(Self.replyText(reply))")
        }
        let heartbeat = Int(amqp_get_heartbeat(connection))
        frameMax = Int(amqp_get_frame_max(connection))
        // A delivery's content header may be longer than the frame_max agreed: the broker adds
        // headers of its own (`x-delivery-count` on a quorum queue's redelivery, `x-death` when it
        // dead-letters) and lets a publisher's frame run a few bytes over. librabbitmq refuses to
        // read any frame longer than its frame_max, and a frame it cannot read ends the
        // connection, at every redelivery of that message: one message would keep a consumer
        // away from its queue. So librabbitmq reads up to `receiveSlack` bytes more, and what
        // this side writes keeps to the agreed `frameMax` (`publish` cuts long bodies itself).
        let tuned = amqp_tune_connection(
            connection, amqp_get_channel_max(connection), Int32(clamping: frameMax + Self.receiveSlack), Int32(clamping: heartbeat))
        guard tuned == AMQP_STATUS_OK.rawValue else { throw refused("cannot set the frame limit: \(Self.statusText(tuned))") }
        pollInterval = ConnectionStateMachine.pollInterval(heartbeatSeconds: heartbeat)
        lastRead = .now
        let control = ChannelState(handle: ChannelHandle(number: Self.controlChannel, jobs: jobs, frameMax: frameMax))
        channels[Self.controlChannel] = control
        try ensureOpen(control)
        status.setConnected(true, endpoint: endpoint)
        logger.debug("connected", metadata: ["node": "\(endpoint)", "vhost": "\(configuration.vhost)", "heartbeat": "\(heartbeat)"])
    }

    func destroyConnection() {
        guard let connection else { return }
        isCorked = false
        amqp_destroy_connection(connection)
        self.connection = nil
        status.setConnected(false)
    }

    // MARK: - Serving

    /// The poll loop: jobs first, then whatever the broker sent, then sleep until either the
    /// socket or the job queue's eventfd wakes the thread, or a heartbeat interval passes.
    private func serve() -> Exit {
        guard let connection else { return .lost(.connectionLost(reason: "no connection")) }
        var poller = Poller([amqp_get_sockfd(connection), jobs.wakeFD])
        jobs.setRunsTasks(true)
        defer { jobs.setRunsTasks(false) }
        while true {
            if jobs.isCloseRequested { return .closeRequested }
            runJobs()
            if let lostError { return .lost(lostError) }
            runTasks()
            if amqp_frames_enqueued(connection) != 0 || amqp_data_in_buffer(connection) != 0 {
                readFrames()
                if let lostError { return .lost(lostError) }
                continue
            }
            guard jobs.prepareToSleep() else {
                // Jobs keep coming: still read what the broker sent (closes, confirms,
                // deliveries), at least every millisecond.
                if lastRead.duration(to: .now) > .milliseconds(1) {
                    readFrames()
                    if let lostError { return .lost(lostError) }
                }
                continue
            }
            let ready = poller.wait(timeout: pollInterval)
            jobs.wokeUp()
            if poller.isReady(1) { jobs.clearWake() }
            // Reading also sends and checks heartbeats, so do it at least once a tick.
            if ConnectionStateMachine.mustRead(
                pollTimedOut: ready == 0, socketReadable: poller.isReady(0), sinceLastRead: lastRead.duration(to: .now),
                pollInterval: pollInterval)
            {
                readFrames()
                if let lostError { return .lost(lostError) }
            }
        }
    }

    private func runJobs() {
        jobs.drain(into: &spareJobs)
        guard !spareJobs.isEmpty else { return }
        // Consecutive writes (publishes, acks) leave in as few TCP segments as possible. A job
        // that waits for a reply must find the socket uncorked, or its request would sit in the
        // kernel until the cork times out.
        let batched = spareJobs.count > 1
        defer { setCorked(false) }
        for (index, job) in spareJobs.enumerated() {
            if lostError != nil {
                // The connection died under an earlier job: the rest run on the next one, first.
                jobs.requeueFront(Array(spareJobs[index...]))
                break
            }
            // Frames that a synchronous call queued (a channel.close, confirms, deliveries) are
            // handled before the next job, which may depend on them.
            if let connection, amqp_frames_enqueued(connection) != 0 {
                setCorked(false)
                readFrames()
                if lostError != nil {
                    jobs.requeueFront(Array(spareJobs[index...]))
                    break
                }
            }
            // Publishes may pass the acks gathered so far (each reply was handed over before its
            // request's ack was asked for); anything else runs after them.
            if !job.onlyWrites { flushAcks() }
            if batched { setCorked(job.onlyWrites) }
            job.run(self)
            scratch.recycle()
        }
        flushAcks()
        spareJobs.removeAll(keepingCapacity: true)
    }

    /// Runs the tasks that prefer this thread (`AMQPConnection.executor`), each until it
    /// suspends or ends; what they ask of the connection are jobs, run on the next round.
    private func runTasks() {
        jobs.drainTasks(into: &spareTasks)
        guard !spareTasks.isEmpty else { return }
        status.runningTasks(true)
        defer { status.runningTasks(false) }
        let executor = jobs.asUnownedTaskExecutor()
        for task in spareTasks { task.runSynchronously(on: executor) }
        spareTasks.removeAll(keepingCapacity: true)
    }

    func setCorked(_ on: Bool) {
        guard isCorked != on, let connection else { return }
        isCorked = on
        var value: Int32 = on ? 1 : 0
        setsockopt(amqp_get_sockfd(connection), Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Sleeps for `duration` unless a job (or a close request) wakes the thread first.
    func waitForWake(_ duration: Duration) {
        var poller = Poller([jobs.wakeFD])
        let ms = Int32(clamping: microseconds(duration) / 1000)
        if poller.wait(timeout: max(1, ms)) > 0 { jobs.clearWake() }
    }

    // MARK: - Closing

    private func closeGracefully() {
        runJobs()
        // Give confirms already on their way a moment to arrive rather than failing them.
        let deadline = ContinuousClock.now + .seconds(5)
        if let connection {
            var poller = Poller([amqp_get_sockfd(connection)])
            while lostError == nil, channels.values.contains(where: { !$0.machine.confirms.isEmpty }), .now < deadline {
                _ = poller.wait(timeout: 50)
                readFrames()
            }
        }
        if lostError == nil, let connection {
            _ = amqp_connection_close(connection, AMQP_REPLY_SUCCESS)
        }
        logger.debug("connection closed")
    }

    private func finish(with error: AMQPError) {
        status.setConnected(false)
        for state in channels.values {
            state.handle.advanceEpoch()
            execute(state.machine.connectionFinished(error))
        }
        channels = [:]
        for job in jobs.close() { job.fail(error) }
        status.markFinished(error)
    }

    /// Tells those a channel's release concerns: pending confirms fail, consumers hear why.
    func execute(_ release: ChannelStateMachine<OptionalConfirmWaiter>.Release) {
        for waiter in release.failedConfirms { waiter?.resume(throwing: release.error) }
        if let event = release.consumerEvent {
            for consumer in release.consumers { consumer.handler(event) }
        }
    }
}
