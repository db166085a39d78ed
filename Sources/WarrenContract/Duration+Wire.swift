extension Duration {
    /// Seconds as a `Double`, for `Date` arithmetic (deadlines).
    package var timeInterval: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// For AMQP's millisecond fields (`expiration`, `x-message-ttl`) and queue names
    /// (`QueueName.eventsRetry`). Saturates at `Int64.min`/`Int64.max` milliseconds instead
    /// of overflowing.
    package var wholeMilliseconds: Int64 {
        let (milliseconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return components.seconds < 0 ? .min : .max }
        let (total, overflowAdding) = milliseconds.addingReportingOverflow(components.attoseconds / 1_000_000_000_000_000)
        return overflowAdding ? (milliseconds < 0 ? .min : .max) : total
    }
}
