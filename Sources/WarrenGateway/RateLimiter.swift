import Synchronization

/// A token bucket per client address: `burst` requests at once, refilled at `perSecond`.
/// One lock around a dictionary: the work under it is a few arithmetic operations.
public final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    public let perSecond: Double
    public let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])
    /// Past this many clients, buckets that have refilled (idle clients) are dropped.
    private let pruneAbove: Int

    /// `perSecond` must be above 0 (the configuration refuses less than 0.001).
    public init(perSecond: Double, burst: Double, pruneAbove: Int = 10_000) {
        self.perSecond = max(perSecond, 0.001)
        self.burst = max(burst, 1)
        self.pruneAbove = pruneAbove
    }

    /// Takes a token for `client`; nil if allowed, else the seconds until one is available
    /// (for `Retry-After`).
    public func acquire(_ client: String, now: ContinuousClock.Instant = .now) -> Double? {
        buckets.withLock { buckets in
            var bucket = buckets[client] ?? Bucket(tokens: burst, updated: now)
            let elapsed = Double((now - bucket.updated) / .nanoseconds(1)) / 1e9
            bucket.tokens = min(burst, bucket.tokens + max(0, elapsed) * perSecond)
            bucket.updated = now
            let wait: Double?
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                wait = nil
            } else {
                wait = (1 - bucket.tokens) / perSecond
            }
            buckets[client] = bucket
            if buckets.count > pruneAbove { prune(&buckets, now: now) }
            return wait
        }
    }

    private func prune(_ buckets: inout [String: Bucket], now: ContinuousClock.Instant) {
        // Bounded before the conversion: a large burst at a low rate is more nanoseconds than Int64 holds.
        let refill = Duration.milliseconds(Int64(min(burst / perSecond, 1e9) * 1000))
        buckets = buckets.filter { now - $0.value.updated < refill }
    }
}
