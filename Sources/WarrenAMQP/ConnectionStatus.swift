import Dispatch
import Synchronization

/// What both sides of the thread boundary may read about a connection.
final class ConnectionStatus: Sendable {
    private let connected = Atomic<Bool>(false)
    private let recoveryCount = Atomic<Int>(0)
    private let finished = Mutex<(done: Bool, failure: AMQPError?, waiters: [CheckedContinuation<Void, Never>])>((false, nil, []))

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

    /// When the I/O thread started the tasks it is running (`AMQPConnection.executor`), in
    /// `DispatchTime` nanoseconds; 0 while it runs none.
    private let tasksStarted = Atomic<UInt64>(0)
    func runningTasks(_ running: Bool) {
        tasksStarted.store(running ? max(1, DispatchTime.now().uptimeNanoseconds) : 0, ordering: .relaxed)
    }
    var tasksHoldingThread: Duration? {
        let started = tasksStarted.load(ordering: .relaxed)
        guard started != 0 else { return nil }
        let now = DispatchTime.now().uptimeNanoseconds
        return .nanoseconds(now > started ? Int64(clamping: now - started) : 0)
    }

    var recoveries: Int { recoveryCount.load(ordering: .relaxed) }
    func recovered() { recoveryCount.add(1, ordering: .relaxed) }

    /// Why the I/O thread ended, once it has: nil when closed on request (`AMQPError.closed`),
    /// else what ended it (a lost connection without recovery). `AMQPConnection.run` throws it.
    var failure: AMQPError? { finished.withLock { $0.failure } }

    func markFinished(_ error: AMQPError) {
        let waiters = finished.withLock { state in
            state.done = true
            state.failure = error == .closed ? nil : error
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
