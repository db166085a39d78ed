import Synchronization

/// What `/health` says about the consumers of this process: whether each is taking messages.
///
/// A consumer is unhealthy while it is not consuming (starting, re-declaring its queue after
/// the broker cancelled it, or stopped), or when it is *stalled*: it holds deliveries and none
/// of its handlers has finished for longer than the stall limit (a wedged handler with
/// concurrency 1 stops a subscriber without any error). Per process: each instance reports
/// its own consumers.
public final class ConsumerHealth: Sendable {
    /// The registry the service host's `/health` reads; consumers register here by default.
    public static let process = ConsumerHealth()

    /// One consumer's state, as `/health` shows it.
    public struct Status: Sendable, Equatable {
        /// `starting` until the broker confirms the consumer, `restarting` while the queue is
        /// declared again after the broker cancelled it, `stopped` once the loop ended.
        public enum State: String, Sendable {
            case starting, consuming, restarting, stopped
        }

        public var queue: String
        /// Only `consuming` is healthy (and then only while not stalled).
        public var state: State
        /// Deliveries handed to handlers and not finished yet.
        public var inFlight: Int
        /// Why it stopped, or what it is waiting for.
        public var detail: String?
        /// How long deliveries have been held without any handler finishing; 0 when idle.
        public var heldFor: Duration
    }

    fileprivate struct Entry {
        var queue: String
        var state: Status.State = .starting
        var inFlight = 0
        var detail: String?
        /// When a handler last finished, or work arrived at an idle consumer.
        var lastProgress = ContinuousClock.now
    }

    private let entries = Mutex<[Int: Entry]>([:])
    private let nextID = Atomic<Int>(0)

    public init() {}

    /// Registers a consumer of `queue`; it reports through the tracker until `remove()`.
    public func track(queue: String) -> Tracker {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).newValue
        entries.withLock { $0[id] = Entry(queue: queue) }
        return Tracker(health: self, id: id)
    }

    /// Every registered consumer, by queue name.
    public func statuses(now: ContinuousClock.Instant = .now) -> [Status] {
        entries.withLock { entries in
            entries.values.map { entry in
                Status(
                    queue: entry.queue, state: entry.state, inFlight: entry.inFlight, detail: entry.detail,
                    heldFor: entry.inFlight > 0 ? now - entry.lastProgress : .zero)
            }
        }.sorted { $0.queue < $1.queue }
    }

    fileprivate func update(_ id: Int, _ change: (inout Entry) -> Void) {
        entries.withLock { entries in
            guard var entry = entries[id] else { return }
            change(&entry)
            entries[id] = entry
        }
    }

    fileprivate func remove(_ id: Int) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    /// A consumer's handle on its entry: cheap calls, safe from any thread.
    public struct Tracker: Sendable {
        let health: ConsumerHealth
        let id: Int

        /// The consumer is registered with the broker and taking messages.
        public func consuming() {
            health.update(id) { entry in
                entry.state = .consuming
                entry.detail = nil
                entry.inFlight = 0
                entry.lastProgress = .now
            }
        }

        /// `count` deliveries were handed to handlers.
        public func received(_ count: Int = 1) {
            health.update(id) { entry in
                if entry.inFlight == 0 { entry.lastProgress = .now }  // the stall clock starts now
                entry.inFlight += count
            }
        }

        /// `count` deliveries ended (acked, forwarded, rejected or given back).
        public func finished(_ count: Int = 1) {
            health.update(id) { entry in
                entry.inFlight = max(0, entry.inFlight - count)
                entry.lastProgress = .now
            }
        }

        /// The broker cancelled the consumer; the loop declares the queue again after a pause.
        public func restarting(_ reason: String) {
            health.update(id) { entry in
                entry.state = .restarting
                entry.detail = reason
                entry.inFlight = 0
            }
        }

        /// The loop ended: on shutdown, or on an error (`reason`) that also ends the process.
        public func stopped(_ reason: String) {
            health.update(id) { entry in
                entry.state = .stopped
                entry.detail = reason
                entry.inFlight = 0
            }
        }

        /// Forgets the consumer (a test's subscriber that ended, a service shut down cleanly).
        public func remove() { health.remove(id) }

        /// The tracker of the consumer loop this task runs in, set by `ConsumerService`.
        @TaskLocal static var current: Tracker?
    }
}
