import Glibc

/// Saturates instead of overflowing: a configured timeout may be any `Duration`.
func microseconds(_ duration: Duration) -> Int64 {
    let (seconds, overflow) = duration.components.seconds.multipliedReportingOverflow(by: 1_000_000)
    if overflow { return duration.components.seconds < 0 ? .min : .max }
    let (total, overflowAdding) = seconds.addingReportingOverflow(duration.components.attoseconds / 1_000_000_000_000)
    return overflowAdding ? .max : total
}

extension timeval {
    init(_ duration: Duration) {
        let us = microseconds(duration)
        self.init(tv_sec: Int(us / 1_000_000), tv_usec: Int(us % 1_000_000))
    }
}
