import CRabbitMQ
import Glibc
import Synchronization

/// Work handed to a connection's I/O thread. `run` executes there with exclusive access to the
/// librabbitmq connection; `fail` is called instead when the connection closes before it ran.
struct Job: Sendable {
    let run: @Sendable (IOLoop) -> Void
    let fail: @Sendable (AMQPError) -> Void
    /// Only writes, never waits for a reply (publish, ack): such jobs may share TCP segments.
    var onlyWrites = false
}

/// The hand-off between any task and the I/O thread: a locked list of jobs plus an eventfd
/// that the I/O thread polls next to the socket, so a job wakes it without a busy loop.
final class JobQueue: Sendable {
    private struct State {
        var jobs: [Job] = []
        var isClosed = false
        var closeRequested = false
        /// The I/O thread is in (or about to enter) poll and needs the eventfd to wake up.
        var isSleeping = false
        /// Publishers waiting for the queue to drain below the high-water mark.
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        /// Task jobs for the I/O thread (this queue as a `TaskExecutor`).
        var tasks: [UnownedJob] = []
        /// The I/O thread is serving a connection, between its jobs: task jobs run there.
        /// Otherwise (connecting, recovering, closed) they go to Swift's shared pool.
        var runsTasks = false
    }

    /// Past this many queued jobs, `publish` waits for the I/O thread to catch up.
    static let highWaterMark = 20_000

    private let state = Mutex(State())
    let wakeFD: Int32

    init() throws(AMQPError) {
        let fd = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard fd >= 0 else { throw .protocolError("eventfd failed: errno \(errno)") }
        wakeFD = fd
    }

    deinit { Glibc.close(wakeFD) }

    /// Queues a job; a queue that is already closed fails it at once with `.closed` and
    /// returns false.
    @discardableResult
    func submit(_ job: Job) -> Bool {
        submitReportingCrowding(job).accepted
    }

    /// Like `submit`, and says whether the queue is past its high-water mark, so a publisher
    /// that does not wait for its job can wait for room instead (`waitForRoom`).
    func submitReportingCrowding(_ job: Job) -> (accepted: Bool, crowded: Bool) {
        let (accepted, mustWake, crowded) = state.withLock { state in
            guard !state.isClosed else { return (false, false, false) }
            state.jobs.append(job)
            // A busy I/O thread finds the job on its next drain; only a sleeping one needs a
            // wake-up, and only once.
            let mustWake = state.isSleeping
            state.isSleeping = false
            return (true, mustWake, state.jobs.count > Self.highWaterMark)
        }
        if !accepted {
            job.fail(.closed)
        } else if mustWake {
            wake()
        }
        return (accepted, crowded)
    }

    /// Asks the I/O thread to close the connection once the jobs queued before this have run.
    func requestClose() {
        state.withLock { $0.closeRequested = true }
        wake()
    }

    var isCloseRequested: Bool { state.withLock { $0.closeRequested } }

    /// Called by the I/O thread before it polls: false if work arrived meanwhile (do not sleep).
    func prepareToSleep() -> Bool {
        state.withLock { state in
            guard state.jobs.isEmpty, state.tasks.isEmpty, !state.closeRequested else { return false }
            state.isSleeping = true
            return true
        }
    }

    /// Called by the I/O thread after polling.
    func wokeUp() {
        state.withLock { $0.isSleeping = false }
    }

    /// Takes every queued job, swapping in `spare` (an emptied array whose storage is reused).
    func drain(into spare: inout [Job]) {
        let waiters = state.withLock { state in
            swap(&state.jobs, &spare)
            defer { state.roomWaiters = [] }
            return state.roomWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Puts jobs that could not run (the connection dropped under them) back at the front, in
    /// their order, ahead of anything submitted since.
    func requeueFront(_ unrun: [Job]) {
        guard !unrun.isEmpty else { return }
        state.withLock { state in state.jobs.insert(contentsOf: unrun, at: 0) }
    }

    /// Waits while the queue is longer than the high-water mark: back-pressure for publishers
    /// that would otherwise outrun the socket and grow memory without bound.
    func waitForRoom() async {
        await withCheckedContinuation { continuation in
            let queued = state.withLock { state in
                guard state.jobs.count > Self.highWaterMark, !state.isClosed else { return false }
                state.roomWaiters.append(continuation)
                return true
            }
            if !queued { continuation.resume() }
        }
    }

    /// Refuses new jobs and returns those still queued so the caller can fail them; task jobs
    /// go to the shared pool, now and from now on.
    func close() -> [Job] {
        let (jobs, waiters, tasks) = state.withLock { state in
            state.isClosed = true
            state.runsTasks = false
            defer {
                state.jobs = []
                state.roomWaiters = []
                state.tasks = []
            }
            return (state.jobs, state.roomWaiters, state.tasks)
        }
        for waiter in waiters { waiter.resume() }
        Self.runOnPool(tasks)
        return jobs
    }

    // MARK: - Running tasks

    /// Called by the I/O thread when it starts serving a connection (true) and when it stops
    /// (false: the task jobs still queued go to the shared pool).
    func setRunsTasks(_ runs: Bool) {
        let orphaned = state.withLock { state in
            state.runsTasks = runs && !state.isClosed
            guard !state.runsTasks else { return [UnownedJob]() }
            defer { state.tasks = [] }
            return state.tasks
        }
        Self.runOnPool(orphaned)
    }

    /// Takes every queued task job, swapping in `spare`.
    func drainTasks(into spare: inout [UnownedJob]) {
        state.withLock { state in swap(&state.tasks, &spare) }
    }

    private static func runOnPool(_ tasks: [UnownedJob]) {
        for task in tasks { runOnPool(task) }
    }

    fileprivate static func runOnPool(_ task: UnownedJob) {
        globalConcurrentExecutor.enqueue(ExecutorJob(task))
    }

    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    func clearWake() {
        var value: UInt64 = 0
        _ = read(wakeFD, &value, 8)
    }
}

/// The queue as the executor of tasks that prefer the I/O thread (`AMQPConnection.executor`).
extension JobQueue: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let (accepted, mustWake) = state.withLock { state in
            guard state.runsTasks else { return (false, false) }
            state.tasks.append(job)
            let mustWake = state.isSleeping
            state.isSleeping = false
            return (true, mustWake)
        }
        if !accepted {
            Self.runOnPool(job)
        } else if mustWake {
            wake()
        }
    }
}
