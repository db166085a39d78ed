import Foundation

extension Date {
    /// Whole seconds since 1970 as AMQP's unsigned 64-bit timestamp: a date before 1970 (or NaN)
    /// is 0 and one past the field's range is its maximum, because a decoded message may carry
    /// any value and forwarding it (a retry, a dead letter) must not trap.
    var amqpTimestamp: UInt64 {
        let seconds = timeIntervalSince1970.rounded(.down)
        guard seconds > 0 else { return 0 }  // also NaN
        guard seconds < 18_446_744_073_709_551_616.0 else { return .max }  // 2^64
        return UInt64(seconds)
    }
}
