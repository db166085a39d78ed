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
