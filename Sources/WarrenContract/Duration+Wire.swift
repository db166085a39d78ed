import Foundation

extension Duration {
    /// For `Date` arithmetic (deadlines).
    var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// For AMQP's millisecond fields (`expiration`, `x-message-ttl`) and queue names. Saturates
    /// at `Int64.min`/`Int64.max` milliseconds instead of overflowing.
    var wholeMilliseconds: Int64 {
        let (milliseconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return components.seconds < 0 ? .min : .max }
        let (total, overflowAdding) = milliseconds.addingReportingOverflow(components.attoseconds / 1_000_000_000_000_000)
        return overflowAdding ? (milliseconds < 0 ? .min : .max) : total
    }
}
