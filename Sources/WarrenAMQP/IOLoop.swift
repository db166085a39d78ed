import CRabbitMQ
import Foundation
import Glibc
import Logging
import Synchronization

/// Who learns the fate of a publish on a confirm channel: the task awaiting `publish`, or the
/// callback of `publish(…, confirmed:)`, run on the I/O thread.
enum ConfirmWaiter: Sendable {
    case task(UnsafeContinuation<Void, any Error>)
    case callback(@Sendable (Result<Void, any Error>) -> Void)

    func resume(with result: Result<Void, any Error>) {
        switch self {
        case .task(let continuation): continuation.resume(with: result)
        case .callback(let confirmed): confirmed(result)
        }
    }

    func resume() { resume(with: .success(())) }
    func resume(throwing error: any Error) { resume(with: .failure(error)) }
}

/// A publish whose confirm nobody awaits (`send` on a confirm channel) still takes a sequence number.
typealias OptionalConfirmWaiter = ConfirmWaiter?

/// A consumer as the I/O thread knows it; kept across reconnects so it can be re-registered.
final class ConsumerState: Sendable {
    let tag: String
    let queue: String
    let noAck: Bool
    let exclusive: Bool
    let arguments: AMQPTable
    let handler: @Sendable (AMQPConsumerEvent) -> Void

    init(tag: String, queue: String, noAck: Bool, exclusive: Bool, arguments: AMQPTable, handler: @escaping @Sendable (AMQPConsumerEvent) -> Void) {
        self.tag = tag
        self.queue = queue
        self.noAck = noAck
        self.exclusive = exclusive
        self.arguments = arguments
        self.handler = handler
    }
}

/// A channel as the I/O thread knows it: what must be restored when it reopens.
final class ChannelState {
    let handle: ChannelHandle
    var isOpen = false
    var prefetchCount: UInt16?
    var confirmMode = false
    var confirms = ConfirmTracker<OptionalConfirmWaiter>()
    var consumers: [String: ConsumerState] = [:]
    /// Consumers cancelled by this process whose deliveries may still be on the wire, and whether
    /// they were no-ack: late deliveries of ack-mode consumers are handed back to the broker.
    var cancelledConsumers: [String: Bool] = [:]
    /// Told about every message the broker returns on this channel (mandatory, unroutable).
    var returnHandler: (@Sendable (AMQPReturnedMessage) -> Void)?

    init(handle: ChannelHandle) { self.handle = handle }
}

/// What both sides of the thread boundary may read about a connection.
final class ConnectionStatus: Sendable {
    private let connected = Atomic<Bool>(false)
    private let recoveryCount = Atomic<Int>(0)
    private let finished = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isConnected: Bool { connected.load(ordering: .relaxed) }
    /// Every change of the connection's state goes through here (the one place to hook metrics):
    /// up on `endpoint`, or down (nil).
    func setConnected(_ value: Bool, endpoint: AMQPConfiguration.Endpoint? = nil) {
        connected.store(value, ordering: .relaxed)
        blocked.store(false, ordering: .relaxed)  // a new connection starts unblocked
        node.withLock { $0 = value ? endpoint : nil }
    }

    /// The node the connection is on, while connected.
    private let node = Mutex<AMQPConfiguration.Endpoint?>(nil)
    var endpoint: AMQPConfiguration.Endpoint? { node.withLock { $0 } }

    /// Between the broker's `connection.blocked` and `connection.unblocked` (a resource alarm).
    private let blocked = Atomic<Bool>(false)
    var isBlocked: Bool { blocked.load(ordering: .relaxed) }
    func setBlocked(_ value: Bool) { blocked.store(value, ordering: .relaxed) }

    var recoveries: Int { recoveryCount.load(ordering: .relaxed) }
    func recovered() { recoveryCount.add(1, ordering: .relaxed) }

    func markFinished() {
        let waiters = finished.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilFinished() async {
        await withCheckedContinuation { continuation in
            let done = finished.withLock { state in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
    }
}

/// The connection's I/O thread: the only code that calls librabbitmq for this connection.
///
/// It polls the socket and the job queue's eventfd together, bounded by the heartbeat, runs
/// jobs, reads frames and dispatches them (deliveries, confirms, returns, closes), and on a
/// lost connection reconnects with backoff and restores topology, channels and consumers.
final class IOLoop {
    private enum Exit {
        case closeRequested
        case lost(AMQPError)
    }

    private static let controlChannel: UInt16 = 1

    let configuration: AMQPConfiguration
    let logger: Logger
    let jobs: JobQueue
    let status: ConnectionStatus

    private var connection: OpaquePointer?
    private var channels: [UInt16: ChannelState] = [:]
    private var topology = TopologyRecord()
    private let scratch = ScratchPool()
    private var lostError: AMQPError?
    private var spareJobs: [Job] = []
    private var heartbeatTick: Int32 = 1000
    private var lastRead = ContinuousClock.now
    private var isCorked = false
    private var isRestoringConsumers = false
    private var rotation: NodeRotation
    /// When the last recovery succeeded and the round it started at (see NodeRotation.startingRound).
    private var lastRecovery: (at: ContinuousClock.Instant, round: Int)?

    init(configuration: AMQPConfiguration, logger: Logger, jobs: JobQueue, status: ConnectionStatus) {
        self.configuration = configuration
        self.logger = logger
        self.jobs = jobs
        self.status = status
        var generator = SystemRandomNumberGenerator()
        self.rotation = NodeRotation(configuration: configuration, using: &generator)
    }

    /// The thread's body. `ready` learns whether the first connection succeeded; after that the
    /// loop runs until close is requested or recovery is disabled and the connection is lost.
    func run(ready: (Result<Void, AMQPError>) -> Void) {
        do {
            try connectToSomeNode()
        } catch {
            finish(with: error)
            ready(.failure(error))
            return
        }
        ready(.success(()))
        var finalError = AMQPError.closed
        loop: while true {
            switch serve() {
            case .closeRequested:
                closeGracefully()
                break loop
            case .lost(let error):
                connectionLost(error)
                guard configuration.recovery.isEnabled, reconnect() else {
                    finalError = configuration.recovery.isEnabled ? .closed : error
                    break loop
                }
            }
        }
        destroyConnection()
        finish(with: finalError)
    }

    // MARK: - Connecting

    /// The first connection: each node once, from the rotation's start. A refused login is the
    /// same on every node of a cluster, so it ends the attempt at once.
    private func connectToSomeNode() throws(AMQPError) {
        var failures: [String] = []
        var lastError = AMQPError.connectionLost(reason: "no node to connect to")
        for _ in rotation.endpoints {
            let endpoint = rotation.current
            do {
                try connect(to: endpoint)
                return
            } catch {
                destroyConnection()
                if case .authenticationFailed = error { throw error }
                lastError = error
                failures.append("\(endpoint): \(error)")
                rotation.advance()
            }
        }
        guard failures.count > 1 else { throw lastError }
        let first = rotation.current
        throw .connectionRefused(host: first.host, port: first.port, reason: "no node answered: \(failures.joined(separator: "; "))")
    }

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
        heartbeatTick = heartbeat > 0 ? Int32(max(50, heartbeat * 1000 / 4)) : 1000
        lastRead = .now
        let control = ChannelState(handle: ChannelHandle(number: Self.controlChannel, jobs: jobs, frameMax: configuration.frameMax))
        channels[Self.controlChannel] = control
        try ensureOpen(control)
        status.setConnected(true, endpoint: endpoint)
        logger.debug("connected", metadata: ["node": "\(endpoint)", "vhost": "\(configuration.vhost)", "heartbeat": "\(heartbeat)"])
    }

    private func destroyConnection() {
        guard let connection else { return }
        isCorked = false
        amqp_destroy_connection(connection)
        self.connection = nil
        status.setConnected(false)
    }

    // MARK: - Serving

    private func serve() -> Exit {
        guard let connection else { return .lost(.connectionLost(reason: "no connection")) }
        var fds = [
            pollfd(fd: amqp_get_sockfd(connection), events: Int16(POLLIN), revents: 0),
            pollfd(fd: jobs.wakeFD, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            if jobs.isCloseRequested { return .closeRequested }
            runJobs()
            if let lostError { return .lost(lostError) }
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
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, heartbeatTick)
            jobs.wokeUp()
            if fds[1].revents != 0 { jobs.clearWake() }
            // Reading also sends and checks heartbeats, so do it at least once a tick.
            if ready == 0 || fds[0].revents != 0 || lastRead.duration(to: .now) > .milliseconds(Int(heartbeatTick)) {
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
            if batched { setCorked(job.onlyWrites) }
            job.run(self)
            scratch.recycle()
        }
        spareJobs.removeAll(keepingCapacity: true)
    }

    private func setCorked(_ on: Bool) {
        guard isCorked != on, let connection else { return }
        isCorked = on
        var value: Int32 = on ? 1 : 0
        setsockopt(amqp_get_sockfd(connection), Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    private func readFrames() {
        guard let connection else { return }
        lastRead = .now
        var frame = amqp_frame_t()
        // Bounded, so that a flood of deliveries cannot starve the job queue (acks, publishes).
        for _ in 0..<512 {
            let status = warren_amqp_wait_frame(connection, &frame, 0)
            if status == AMQP_STATUS_TIMEOUT.rawValue { break }
            guard status == AMQP_STATUS_OK.rawValue else {
                lose(.connectionLost(reason: Self.statusText(status)))
                return
            }
            dispatch(frame)
            if lostError != nil { return }
        }
        amqp_maybe_release_buffers(connection)
    }

    private func dispatch(_ frame: amqp_frame_t) {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD), let decoded = frame.payload.method.decoded else { return }
        let channel = frame.channel
        switch Int(frame.payload.method.id) {
        case WARREN_METHOD_BASIC_DELIVER:
            let deliver = decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            deliverMessage(deliver, channel: channel)
        case WARREN_METHOD_BASIC_ACK:
            let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            confirm(channel: channel, deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0, ack: true)
        case WARREN_METHOD_BASIC_NACK:
            let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            confirm(channel: channel, deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0, ack: false)
        case WARREN_METHOD_BASIC_RETURN:
            let returned = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            returnMessage(returned, channel: channel)
        case WARREN_METHOD_BASIC_CANCEL:
            let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            serverCancelled(tag: String(amqpBytes: cancel.consumer_tag), channel: channel)
        case WARREN_METHOD_CHANNEL_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            acknowledgeChannelClose(channel)
            channelClosed(channel, error: .channelClosed(code: close.reply_code, text: String(amqpBytes: close.reply_text)))
        case WARREN_METHOD_CONNECTION_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            acknowledgeConnectionClose()
            lose(.connectionClosed(code: close.reply_code, text: String(amqpBytes: close.reply_text)))
        case WARREN_METHOD_CONNECTION_BLOCKED:
            status.setBlocked(true)
            logger.warning("the broker blocked publishing on this connection (memory or disk alarm)")
        case WARREN_METHOD_CONNECTION_UNBLOCKED:
            status.setBlocked(false)
            logger.info("the broker unblocked publishing on this connection")
        default:
            break
        }
    }

    private func deliverMessage(_ deliver: amqp_basic_deliver_t, channel number: UInt16) {
        let tag = String(amqpBytes: deliver.consumer_tag)
        let exchange = String(amqpBytes: deliver.exchange)
        let routingKey = String(amqpBytes: deliver.routing_key)
        guard let (properties, body) = readContent(channel: number) else { return }
        guard let state = channels[number] else { return }
        guard let consumer = state.consumers[tag] else {
            if state.cancelledConsumers[tag] == false, let connection {
                amqp_basic_reject(connection, number, deliver.delivery_tag, 1)
            }
            return
        }
        let delivery = AMQPDelivery(
            body: body, properties: properties, exchange: exchange, routingKey: routingKey,
            deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0, consumerTag: tag,
            acknowledger: consumer.noAck ? nil : AMQPDelivery.Acknowledger(channel: state.handle, epoch: state.handle.epoch))
        consumer.handler(.delivery(delivery))
    }

    /// Reads the header and body frames that follow a basic.deliver, basic.return or basic.get-ok.
    private func readContent(channel: UInt16) -> (AMQPProperties, Data)? {
        guard let connection else { return nil }
        var message = amqp_message_t()
        let reply = amqp_read_message(connection, channel, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            lose(.connectionLost(reason: "reading message content: \(Self.replyText(reply))"))
            return nil
        }
        defer { amqp_destroy_message(&message) }
        return (decodeProperties(message.properties), Data(amqpBytes: message.body))
    }

    private func confirm(channel: UInt16, deliveryTag: UInt64, multiple: Bool, ack: Bool) {
        guard let state = channels[channel] else { return }
        for (waiter, result) in state.confirms.confirmed(deliveryTag: deliveryTag, multiple: multiple, ack: ack) {
            waiter?.resume(with: result.mapError { $0 as any Error })
        }
    }

    private func returnMessage(_ returned: amqp_basic_return_t, channel: UInt16) {
        let exchange = String(amqpBytes: returned.exchange)
        let routingKey = String(amqpBytes: returned.routing_key)
        let text = String(amqpBytes: returned.reply_text)
        guard let (properties, body) = readContent(channel: channel), let state = channels[channel] else { return }
        if let handler = state.returnHandler {
            handler(AMQPReturnedMessage(exchange: exchange, routingKey: routingKey, replyCode: returned.reply_code, replyText: text, properties: properties, body: body))
        }
        if state.confirmMode {
            state.confirms.returned(exchange: exchange, routingKey: routingKey, body: body, code: returned.reply_code, text: text)
        } else if state.returnHandler == nil {
            logger.warning("message returned by the broker", metadata: ["exchange": "\(exchange)", "routing_key": "\(routingKey)", "reason": "\(returned.reply_code) \(text)"])
        }
    }

    private func serverCancelled(tag: String, channel: UInt16) {
        guard let consumer = channels[channel]?.consumers.removeValue(forKey: tag) else { return }
        logger.info("the broker cancelled a consumer", metadata: ["queue": "\(consumer.queue)", "consumer_tag": "\(tag)"])
        consumer.handler(.ended(.consumerCancelled(queue: consumer.queue)))
    }

    private func acknowledgeChannelClose(_ channel: UInt16) {
        guard let connection else { return }
        var closeOK = amqp_channel_close_ok_t(dummy: 0)
        amqp_send_method(connection, channel, amqp_method_number_t(WARREN_METHOD_CHANNEL_CLOSE_OK), &closeOK)
    }

    private func acknowledgeConnectionClose() {
        guard let connection else { return }
        var closeOK = amqp_connection_close_ok_t(dummy: 0)
        amqp_send_method(connection, 0, amqp_method_number_t(WARREN_METHOD_CONNECTION_CLOSE_OK), &closeOK)
    }

    /// The broker closed one channel: everything waiting on it fails with the broker's reason.
    /// It reopens on next use; its consumers end, since their deliveries cannot be acked any more.
    private func channelClosed(_ number: UInt16, error: AMQPError) {
        guard let state = channels[number] else { return }
        logger.debug("the broker closed a channel", metadata: ["channel": "\(number)", "error": "\(error)"])
        state.isOpen = false
        state.handle.advanceEpoch()
        for waiter in state.confirms.failAll() { waiter?.resume(throwing: error) }
        // While consumers are being restored, restoreConsumers decides which of them end.
        if !isRestoringConsumers {
            for consumer in state.consumers.values { consumer.handler(.ended(error)) }
        }
        state.consumers = [:]
        state.cancelledConsumers = [:]
    }

    private func lose(_ error: AMQPError) {
        if lostError == nil { lostError = error }
    }

    // MARK: - Recovery

    private func connectionLost(_ error: AMQPError) {
        logger.warning("connection to the broker lost", metadata: ["error": "\(error)"])
        status.setConnected(false)
        for state in channels.values {
            state.isOpen = false
            state.handle.advanceEpoch()
            for waiter in state.confirms.failAll() { waiter?.resume(throwing: error) }
            state.cancelledConsumers = [:]
            if configuration.recovery.isEnabled {
                for consumer in state.consumers.values { consumer.handler(.interrupted(error)) }
            } else {
                for consumer in state.consumers.values { consumer.handler(.ended(error)) }
                state.consumers = [:]
            }
        }
        destroyConnection()
        lostError = nil
    }

    /// Reconnects until it succeeds or close is requested: rounds of every node once, from the
    /// node after the one lost, with a jittered, capped backoff between rounds (NodeRotation).
    private func reconnect() -> Bool {
        let lost = rotation.current
        rotation.advance()
        var attempt = 0
        var round = NodeRotation.startingRound(previous: lastRecovery?.round ?? 0, upFor: lastRecovery.map { $0.at.duration(to: .now) })
        let startingRound = round
        if round > 0 {
            // Lost again right after recovering: pause first, as after a failed round.
            let pause = NodeRotation.backoff(
                afterRound: round - 1, initial: configuration.recovery.initialBackoff, maximum: configuration.recovery.maxBackoff,
                fraction: Double.random(in: 0..<1))
            logger.info("connection lost again right after recovering; pausing first", metadata: ["backoff": "\(pause)"])
            waitForWake(pause)
        }
        while !jobs.isCloseRequested {
            for _ in rotation.endpoints {
                guard !jobs.isCloseRequested else { return false }
                attempt += 1
                let endpoint = rotation.current
                do {
                    try connect(to: endpoint)
                    try restore()
                    status.recovered()
                    lastRecovery = (.now, startingRound)
                    logger.info("connection to the broker recovered", metadata: ["attempt": "\(attempt)", "node": "\(endpoint)", "lost_node": "\(lost)"])
                    return true
                } catch {
                    logger.info("reconnect failed; trying the next node", metadata: ["attempt": "\(attempt)", "node": "\(endpoint)", "error": "\(error)"])
                    for state in channels.values { state.isOpen = false }
                    destroyConnection()
                    lostError = nil
                    rotation.advance()
                }
            }
            let pause = NodeRotation.backoff(
                afterRound: round, initial: configuration.recovery.initialBackoff, maximum: configuration.recovery.maxBackoff,
                fraction: Double.random(in: 0..<1))
            logger.debug("no node answered; pausing before the next round", metadata: ["round": "\(round + 1)", "backoff": "\(pause)"])
            waitForWake(pause)
            round += 1
        }
        return false
    }

    private func waitForWake(_ duration: Duration) {
        var fd = pollfd(fd: jobs.wakeFD, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: microseconds(duration) / 1000)
        if poll(&fd, 1, max(1, ms)) > 0 { jobs.clearWake() }
    }

    /// Declares the recorded topology again, then reopens channels and re-registers consumers.
    private func restore() throws(AMQPError) {
        guard let control = channels[Self.controlChannel] else { return }
        for entry in topology.entries {
            try declareDuringRecovery(entry, on: control)
        }
        for (number, state) in channels.sorted(by: { $0.key < $1.key }) where number != Self.controlChannel {
            try restoreConsumers(state)
        }
    }

    /// An exclusive queue of the old connection may linger for a moment on the broker
    /// (405 RESOURCE_LOCKED): try again briefly before giving up on that entry.
    private func declareDuringRecovery(_ entry: TopologyRecord.Entry, on control: ChannelState) throws(AMQPError) {
        for attempt in 1...20 {
            do {
                try ensureOpen(control)
                try declare(entry, on: Self.controlChannel)
                return
            } catch {
                guard case .channelClosed(let code, _) = error else { throw error }
                if code == 405, attempt < 20 {
                    waitForWake(.milliseconds(100))
                    continue
                }
                logger.error("could not restore topology", metadata: ["entry": "\(entry)", "error": "\(error)"])
                return
            }
        }
    }

    /// Re-registers a channel's consumers. A consumer the broker refuses (its queue is gone)
    /// ends with that error; since refusing closes the channel, the others are registered again.
    private func restoreConsumers(_ state: ChannelState) throws(AMQPError) {
        var pending = state.consumers.values.sorted { $0.tag < $1.tag }
        isRestoringConsumers = true
        defer { isRestoringConsumers = false }
        while true {
            state.consumers = [:]
            var refused: (index: Int, error: AMQPError)?
            do throws(AMQPError) {
                try ensureOpen(state)
                for (index, consumer) in pending.enumerated() {
                    do {
                        try startConsumer(consumer, on: state)
                    } catch {
                        guard case .channelClosed = error else { throw error }
                        refused = (index, error)
                        break
                    }
                }
            } catch {
                // The connection failed again: keep every consumer for the next attempt.
                for consumer in pending { state.consumers[consumer.tag] = consumer }
                throw error
            }
            guard let refused else { return }
            let consumer = pending.remove(at: refused.index)
            logger.error("could not restore a consumer", metadata: ["queue": "\(consumer.queue)", "error": "\(refused.error)"])
            consumer.handler(.ended(refused.error))
        }
    }

    // MARK: - Closing

    private func closeGracefully() {
        runJobs()
        // Give confirms already on their way a moment to arrive rather than failing them.
        let deadline = ContinuousClock.now + .seconds(5)
        while lostError == nil, channels.values.contains(where: { !$0.confirms.isEmpty }), .now < deadline {
            var fd = pollfd(fd: amqp_get_sockfd(connection), events: Int16(POLLIN), revents: 0)
            _ = poll(&fd, 1, 50)
            readFrames()
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
            for waiter in state.confirms.failAll() { waiter?.resume(throwing: error) }
            for consumer in state.consumers.values {
                consumer.handler(.ended(error == .closed ? nil : error))
            }
        }
        channels = [:]
        for job in jobs.close() { job.fail(error) }
        status.markFinished()
    }

    // MARK: - Operations, called by jobs on this thread

    private func check(_ reply: amqp_rpc_reply_t, channel: UInt16, operation: @autoclosure () -> String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            let (code, text) = Self.closeReason(reply.reply)
            if Int(reply.reply.id) == WARREN_METHOD_CHANNEL_CLOSE {
                let error = AMQPError.channelClosed(code: code, text: text)
                acknowledgeChannelClose(channel)
                channelClosed(channel, error: error)
                throw error
            }
            acknowledgeConnectionClose()
            let error = AMQPError.connectionClosed(code: code, text: text)
            lose(error)
            throw error
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_TIMEOUT.rawValue:
            let error = AMQPError.timedOut(operation: operation())
            lose(error)
            throw error
        default:
            let error = AMQPError.connectionLost(reason: "\(operation()): \(Self.replyText(reply))")
            lose(error)
            throw error
        }
    }

    private func liveConnection() throws(AMQPError) -> OpaquePointer {
        guard let connection, lostError == nil else { throw lostError ?? .connectionLost(reason: "not connected") }
        return connection
    }

    private func ensureOpen(_ state: ChannelState) throws(AMQPError) {
        guard !state.isOpen else { return }
        setCorked(false)  // the open must reach the broker now: we wait for its reply
        let connection = try liveConnection()
        // Confirms of the old incarnation still queued must not resolve the new one's publishes.
        while amqp_frames_enqueued(connection) != 0, lostError == nil { readFrames() }
        let number = state.handle.number
        amqp_channel_open(connection, number)
        try check(amqp_get_rpc_reply(connection), channel: number, operation: "opening channel \(number)")
        state.isOpen = true
        state.handle.advanceEpoch()
        state.confirms.reset()
        if let prefetch = state.prefetchCount {
            amqp_basic_qos(connection, number, 0, prefetch, 0)
            try check(amqp_get_rpc_reply(connection), channel: number, operation: "basic.qos")
        }
        if state.confirmMode {
            amqp_confirm_select(connection, number)
            try check(amqp_get_rpc_reply(connection), channel: number, operation: "confirm.select")
        }
    }

    private func openState(_ handle: ChannelHandle) throws(AMQPError) -> ChannelState {
        guard let state = channels[handle.number], state.handle === handle else { throw .closed }
        try ensureOpen(state)
        return state
    }

    func openChannel() throws(AMQPError) -> ChannelHandle {
        let limit = UInt16(clamping: connection.map { Int(amqp_get_channel_max($0)) }.flatMap { $0 > 0 ? $0 : nil } ?? configuration.channelMax)
        guard let number = (Self.controlChannel + 1...max(limit, Self.controlChannel + 1)).first(where: { channels[$0] == nil }) else {
            throw .protocolError("all \(limit) channels are in use")
        }
        let state = ChannelState(handle: ChannelHandle(number: number, jobs: jobs, frameMax: configuration.frameMax))
        channels[number] = state
        do {
            try ensureOpen(state)
        } catch {
            channels.removeValue(forKey: number)
            throw error
        }
        return state.handle
    }

    func closeChannel(_ handle: ChannelHandle) {
        guard let state = channels[handle.number], state.handle === handle else { return }
        if state.isOpen, let connection, lostError == nil {
            let reply = amqp_channel_close(connection, handle.number, AMQP_REPLY_SUCCESS)
            if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, Int(reply.reply.id) == WARREN_METHOD_CHANNEL_CLOSE {
                // The broker was closing it at the same time: it still needs our close-ok, or the
                // channel number stays half-closed and its next open kills the connection.
                acknowledgeChannelClose(handle.number)
            } else if reply.reply_type != AMQP_RESPONSE_NORMAL, reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION {
                lose(.connectionLost(reason: "closing channel: \(Self.replyText(reply))"))
            }
        }
        channels.removeValue(forKey: handle.number)
        handle.advanceEpoch()
        for waiter in state.confirms.failAll() { waiter?.resume(throwing: AMQPError.closed) }
        for consumer in state.consumers.values { consumer.handler(.ended(nil)) }
    }

    func setReturnHandler(_ handle: ChannelHandle, _ handler: @escaping @Sendable (AMQPReturnedMessage) -> Void) throws(AMQPError) {
        try openState(handle).returnHandler = handler
    }

    func setPrefetch(_ handle: ChannelHandle, count: UInt16) throws(AMQPError) {
        let state = try openState(handle)
        let connection = try liveConnection()
        amqp_basic_qos(connection, handle.number, 0, count, 0)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "basic.qos")
        state.prefetchCount = count
    }

    func enableConfirms(_ handle: ChannelHandle) throws(AMQPError) {
        let state = try openState(handle)
        guard !state.confirmMode else { return }
        let connection = try liveConnection()
        amqp_confirm_select(connection, handle.number)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "confirm.select")
        state.confirmMode = true
        handle.confirmMode = true
    }

    private func declare(_ entry: TopologyRecord.Entry, on channel: UInt16) throws(AMQPError) {
        let connection = try liveConnection()
        switch entry {
        case .exchange(let exchange):
            amqp_exchange_declare(
                connection, channel, scratch.bytes(exchange.name), scratch.bytes(exchange.type), 0,
                exchange.durable ? 1 : 0, exchange.autoDelete ? 1 : 0, exchange.internal ? 1 : 0, scratch.table(exchange.arguments))
            try check(amqp_get_rpc_reply(connection), channel: channel, operation: "declaring exchange '\(exchange.name)'")
        case .queue(let queue):
            _ = try declareQueue(queue, passive: false, on: channel)
        case .binding(let binding):
            amqp_queue_bind(
                connection, channel, scratch.bytes(binding.queue), scratch.bytes(binding.exchange),
                scratch.bytes(binding.routingKey), scratch.table(binding.arguments))
            try check(amqp_get_rpc_reply(connection), channel: channel, operation: "binding queue '\(binding.queue)' to '\(binding.exchange)'")
        }
    }

    func declare(_ handle: ChannelHandle, _ entry: TopologyRecord.Entry) throws(AMQPError) {
        _ = try openState(handle)
        try declare(entry, on: handle.number)
        topology.record(entry)
    }

    private func declareQueue(_ queue: TopologyRecord.Queue, passive: Bool, on channel: UInt16) throws(AMQPError) -> AMQPQueueInfo {
        let connection = try liveConnection()
        let ok = amqp_queue_declare(
            connection, channel, scratch.bytes(queue.name), passive ? 1 : 0, queue.durable ? 1 : 0,
            queue.exclusive ? 1 : 0, queue.autoDelete ? 1 : 0, scratch.table(queue.arguments))
        try check(amqp_get_rpc_reply(connection), channel: channel, operation: "declaring queue '\(queue.name)'")
        guard let ok else { throw .protocolError("queue.declare-ok missing") }
        return AMQPQueueInfo(name: String(amqpBytes: ok.pointee.queue), messageCount: ok.pointee.message_count, consumerCount: ok.pointee.consumer_count)
    }

    func declareQueue(_ handle: ChannelHandle, _ queue: TopologyRecord.Queue, passive: Bool) throws(AMQPError) -> AMQPQueueInfo {
        _ = try openState(handle)
        let info = try declareQueue(queue, passive: passive, on: handle.number)
        // A server-named queue cannot be declared again under its name ('amq.' is reserved):
        // it is not recovered, and neither are its consumers (they end with an error).
        if !passive, !queue.name.isEmpty {
            topology.record(.queue(queue))
        }
        return info
    }

    func declareExchangePassive(_ handle: ChannelHandle, name: String) throws(AMQPError) {
        _ = try openState(handle)
        let connection = try liveConnection()
        amqp_exchange_declare(connection, handle.number, scratch.bytes(name), scratch.bytes("direct"), 1, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "checking exchange '\(name)'")
    }

    func unbindQueue(_ handle: ChannelHandle, _ binding: TopologyRecord.Binding) throws(AMQPError) {
        _ = try openState(handle)
        let connection = try liveConnection()
        amqp_queue_unbind(
            connection, handle.number, scratch.bytes(binding.queue), scratch.bytes(binding.exchange),
            scratch.bytes(binding.routingKey), scratch.table(binding.arguments))
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "unbinding queue '\(binding.queue)'")
        topology.unbind(queue: binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
    }

    func deleteQueue(_ handle: ChannelHandle, name: String, ifUnused: Bool, ifEmpty: Bool) throws(AMQPError) -> UInt32 {
        _ = try openState(handle)
        let connection = try liveConnection()
        let ok = amqp_queue_delete(connection, handle.number, scratch.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "deleting queue '\(name)'")
        topology.deleteQueue(name)
        return ok?.pointee.message_count ?? 0
    }

    func deleteExchange(_ handle: ChannelHandle, name: String, ifUnused: Bool) throws(AMQPError) {
        _ = try openState(handle)
        let connection = try liveConnection()
        amqp_exchange_delete(connection, handle.number, scratch.bytes(name), ifUnused ? 1 : 0)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "deleting exchange '\(name)'")
        topology.deleteExchange(name)
    }

    func purgeQueue(_ handle: ChannelHandle, name: String) throws(AMQPError) -> UInt32 {
        _ = try openState(handle)
        let connection = try liveConnection()
        let ok = amqp_queue_purge(connection, handle.number, scratch.bytes(name))
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "purging queue '\(name)'")
        return ok?.pointee.message_count ?? 0
    }

    func publish(
        _ handle: ChannelHandle, body: Data, exchange: String, routingKey: String, mandatory: Bool,
        properties: AMQPProperties, waiter: ConfirmWaiter?
    ) {
        let state: ChannelState
        let connection: OpaquePointer
        do {
            state = try openState(handle)
            connection = try liveConnection()
        } catch {
            logPublishFailure(error, waiter: waiter, exchange: exchange, routingKey: routingKey)
            return
        }
        var rawProperties = scratch.properties(properties)
        let status = body.withUnsafeBytes { buffer in
            amqp_basic_publish(
                connection, handle.number, scratch.bytes(exchange), scratch.bytes(routingKey), mandatory ? 1 : 0, 0,
                &rawProperties, amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress)))
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            let error = AMQPError.connectionLost(reason: "publishing: \(Self.statusText(status))")
            lose(error)
            logPublishFailure(error, waiter: waiter, exchange: exchange, routingKey: routingKey)
            return
        }
        if state.confirmMode {
            state.confirms.published(
                waiter, exchange: exchange, routingKey: routingKey,
                mandatory: mandatory ? .init(exchange: exchange, routingKey: routingKey, body: body) : nil)
        } else {
            waiter?.resume()
        }
    }

    /// A publish without confirms has no one waiting to hear it failed: say so in the log.
    private func logPublishFailure(_ error: AMQPError, waiter: ConfirmWaiter?, exchange: String, routingKey: String) {
        if let waiter {
            waiter.resume(throwing: error)
        } else {
            logger.warning("publish failed", metadata: ["exchange": "\(exchange)", "routing_key": "\(routingKey)", "error": "\(error)"])
        }
    }

    private func startConsumer(_ consumer: ConsumerState, on state: ChannelState) throws(AMQPError) {
        let connection = try liveConnection()
        amqp_basic_consume(
            connection, state.handle.number, scratch.bytes(consumer.queue), scratch.bytes(consumer.tag), 0,
            consumer.noAck ? 1 : 0, consumer.exclusive ? 1 : 0, scratch.table(consumer.arguments))
        try check(amqp_get_rpc_reply(connection), channel: state.handle.number, operation: "consuming from queue '\(consumer.queue)'")
        state.consumers[consumer.tag] = consumer
    }

    func consume(_ handle: ChannelHandle, consumer: ConsumerState) throws(AMQPError) {
        let state = try openState(handle)
        try startConsumer(consumer, on: state)
    }

    func cancelConsumer(_ handle: ChannelHandle, tag: String) {
        guard let state = channels[handle.number], state.handle === handle,
            let consumer = state.consumers.removeValue(forKey: tag)
        else { return }
        consumer.handler(.ended(nil))
        guard state.isOpen, let connection, lostError == nil else { return }
        state.cancelledConsumers[tag] = consumer.noAck
        amqp_basic_cancel(connection, handle.number, scratch.bytes(tag))
        try? check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "cancelling consumer")
        // After cancel-ok the broker sends nothing more for this tag; what it sent before is
        // queued now and handed back by deliverMessage.
        while lostError == nil, amqp_frames_enqueued(connection) != 0 { readFrames() }
        state.cancelledConsumers.removeValue(forKey: tag)
    }

    func get(_ handle: ChannelHandle, queue: String, noAck: Bool) throws(AMQPError) -> AMQPDelivery? {
        let state = try openState(handle)
        // Deliveries arriving during basic.get would be queued between its reply and content,
        // which librabbitmq cannot untangle.
        guard state.consumers.isEmpty else {
            throw .invalidArgument("basic.get on a channel with consumers: use a channel without consumers")
        }
        let connection = try liveConnection()
        let reply = amqp_basic_get(connection, handle.number, scratch.bytes(queue), noAck ? 1 : 0)
        try check(reply, channel: handle.number, operation: "basic.get from '\(queue)'")
        guard Int(reply.reply.id) == WARREN_METHOD_BASIC_GET_OK, let decoded = reply.reply.decoded else { return nil }
        let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        let exchange = String(amqpBytes: ok.exchange)
        let routingKey = String(amqpBytes: ok.routing_key)
        guard let (properties, body) = readContent(channel: handle.number) else { throw lostError ?? .connectionLost(reason: "basic.get") }
        return AMQPDelivery(
            body: body, properties: properties, exchange: exchange, routingKey: routingKey, deliveryTag: ok.delivery_tag,
            redelivered: ok.redelivered != 0, consumerTag: nil,
            acknowledger: noAck ? nil : AMQPDelivery.Acknowledger(channel: handle, epoch: state.handle.epoch),
            messageCount: ok.message_count)
    }

    enum Acknowledgement {
        case ack(multiple: Bool)
        case nack(multiple: Bool, requeue: Bool)
        case reject(requeue: Bool)
    }

    /// Acks only on the channel epoch the delivery came from: after a reopen the same tag names
    /// another message.
    func acknowledge(_ handle: ChannelHandle, epoch: UInt64, deliveryTag: UInt64, _ acknowledgement: Acknowledgement) {
        guard let state = channels[handle.number], state.handle === handle, state.isOpen, handle.epoch == epoch,
            let connection, lostError == nil
        else {
            logger.debug("dropped an acknowledgement for a delivery from a closed channel", metadata: ["delivery_tag": "\(deliveryTag)"])
            return
        }
        let status: Int32
        switch acknowledgement {
        case .ack(let multiple):
            status = amqp_basic_ack(connection, handle.number, deliveryTag, multiple ? 1 : 0)
        case .nack(let multiple, let requeue):
            status = amqp_basic_nack(connection, handle.number, deliveryTag, multiple ? 1 : 0, requeue ? 1 : 0)
        case .reject(let requeue):
            status = amqp_basic_reject(connection, handle.number, deliveryTag, requeue ? 1 : 0)
        }
        if status != AMQP_STATUS_OK.rawValue {
            lose(.connectionLost(reason: "acknowledging: \(Self.statusText(status))"))
        }
    }

    // MARK: - Helpers

    private static func statusText(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    private static func replyText(_ reply: amqp_rpc_reply_t) -> String {
        switch reply.reply_type {
        case AMQP_RESPONSE_LIBRARY_EXCEPTION: statusText(reply.library_error)
        case AMQP_RESPONSE_SERVER_EXCEPTION: "\(closeReason(reply.reply))"
        default: "no reply"
        }
    }

    /// The code and text of a channel.close or connection.close (both have the same layout).
    private static func closeReason(_ method: amqp_method_t) -> (UInt16, String) {
        guard let decoded = method.decoded else { return (0, "") }
        switch Int(method.id) {
        case WARREN_METHOD_CHANNEL_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            return (close.reply_code, String(amqpBytes: close.reply_text))
        case WARREN_METHOD_CONNECTION_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            return (close.reply_code, String(amqpBytes: close.reply_text))
        default:
            return (0, "unexpected method \(method.id)")
        }
    }
}

/// Saturates instead of overflowing: a configured timeout may be any `Duration`.
private func microseconds(_ duration: Duration) -> Int64 {
    let (seconds, overflow) = duration.components.seconds.multipliedReportingOverflow(by: 1_000_000)
    if overflow { return duration.components.seconds < 0 ? .min : .max }
    let (total, overflowAdding) = seconds.addingReportingOverflow(duration.components.attoseconds / 1_000_000_000_000)
    return overflowAdding ? .max : total
}

extension timeval {
    fileprivate init(_ duration: Duration) {
        let us = microseconds(duration)
        self.init(tv_sec: Int(us / 1_000_000), tv_usec: Int(us % 1_000_000))
    }
}
