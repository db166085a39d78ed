import WarrenAMQP

/// The RPC client's correlation table: calls waiting for a reply, by correlation id. A value
/// type with no I/O, so the matching, expiry and probing rules are testable on their own.
struct PendingCalls<Waiter> {
    struct Call {
        var waiter: Waiter
        var queue: String
        var deadline: ContinuousClock.Instant
        /// When to ask the broker whether anyone consumes `queue`, if no reply came by then.
        var probeAt: ContinuousClock.Instant
    }

    private var calls: [String: Call] = [:]

    mutating func add(_ id: String, _ call: Call) {
        calls[id] = call
    }

    /// Whether a call with this id waits: a second call with the same id needs another one.
    func contains(_ id: String) -> Bool {
        calls[id] != nil
    }

    /// The call a reply answers, or nil for a late or foreign reply (already timed out).
    mutating func complete(_ id: String) -> Call? {
        calls.removeValue(forKey: id)
    }

    /// Removes and returns every call past its deadline.
    mutating func expire(now: ContinuousClock.Instant) -> [Call] {
        var expired: [Call] = []
        for (id, call) in calls where call.deadline <= now {
            expired.append(call)
            calls.removeValue(forKey: id)
        }
        return expired
    }

    /// Queues with a call waiting longer than its probe delay; each call is probed once.
    mutating func queuesToProbe(now: ContinuousClock.Instant) -> Set<String> {
        var queues = Set<String>()
        for (id, call) in calls where call.probeAt <= now {
            queues.insert(call.queue)
            calls[id]?.probeAt = call.deadline
        }
        return queues
    }

    /// The earliest deadline or probe of the calls waiting: when the RPC client must next look
    /// at them; nil when none waits.
    var nextEvent: ContinuousClock.Instant? {
        calls.values.lazy.map { min($0.deadline, $0.probeAt) }.min()
    }

    /// Removes and returns the calls to one queue (its service is gone) or to all (connection lost).
    mutating func removeAll(queue: String? = nil) -> [Call] {
        var removed: [Call] = []
        for (id, call) in calls where queue == nil || call.queue == queue {
            removed.append(call)
            calls.removeValue(forKey: id)
        }
        return removed
    }
}

/// When the RPC client's `run()` must wake: what it sleeps until, and its waiting continuation.
/// Decides, for each call added, whether it must be woken (the call is due earlier), so that
/// only the first call after an idle spell, or one with a shorter timeout, costs a wake-up.
struct DeadlineSchedule {
    /// What `run()` sleeps until; nil while it waits with no call pending (or has not slept yet).
    private(set) var wakeAt: ContinuousClock.Instant?
    /// A wake-up asked for before `run()` began to wait: it must not wait then.
    private(set) var wakeRequested = false
    private var waiter: CheckedContinuation<Void, Never>?
    /// Set once: `run()` ends and calls are refused.
    var stopped = false

    /// `run()` is about to sleep until `next` (its earliest event; nil: none). Returns `next`.
    mutating func sleep(until next: ContinuousClock.Instant?) -> ContinuousClock.Instant? {
        wakeAt = next
        wakeRequested = false
        return next
    }

    /// A call due at `event` was added; returns the continuation to resume when `run()` must
    /// wake for it (the caller resumes it outside the lock).
    mutating func added(_ event: ContinuousClock.Instant) -> CheckedContinuation<Void, Never>? {
        if let wakeAt, wakeAt <= event { return nil }
        // From now on `run()` looks at least as early as `event`: later calls need no wake-up.
        wakeAt = event
        wakeRequested = true
        return takeWaiter()
    }

    /// `run()` waits on `continuation`; true when it must not wait (resume at once).
    mutating func wait(_ continuation: CheckedContinuation<Void, Never>, cancelled: Bool) -> Bool {
        if wakeRequested || stopped || cancelled {
            wakeRequested = false
            return true
        }
        waiter = continuation
        return false
    }

    mutating func takeWaiter() -> CheckedContinuation<Void, Never>? {
        defer { waiter = nil }
        return waiter
    }
}
