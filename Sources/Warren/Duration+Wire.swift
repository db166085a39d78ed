import Foundation

extension Duration {
    /// For `Date` arithmetic (deadlines).
    var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// For AMQP's millisecond fields (`expiration`, `x-message-ttl`) and queue names.
    var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
