import Foundation
import Glibc
import WarrenAMQP

/// The one form timestamps are stored and returned in, `2026-11-20T14:13:42.123Z` (UTC,
/// milliseconds, fixed width), so that comparing the text compares the times and since/until
/// need no conversion per row.
enum EventTimestamp {
    /// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in epoch milliseconds: the
    /// range a four-digit year can write, so that text order stays time order.
    static let earliestMilliseconds: Int64 = -62_167_219_200_000
    static let latestMilliseconds: Int64 = 253_402_300_799_999

    /// Any date, also one read off the wire (an AMQP timestamp may be up to 2^64 - 1 seconds),
    /// is clamped into the four-digit years; NaN is 1970. Never traps.
    static func string(_ date: Date) -> String {
        let milliseconds = AMQPFieldValue.double((date.timeIntervalSince1970 * 1000).rounded(.down))
            .integer(clampedTo: earliestMilliseconds...latestMilliseconds) ?? 0
        let (secondsPart, millisecondsPart) = milliseconds.quotientAndRemainder(dividingBy: 1000)
        var seconds = time_t(millisecondsPart < 0 ? secondsPart - 1 : secondsPart)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
            + "T\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
            + ".\(pad(Int((millisecondsPart + 1000) % 1000), 3))Z"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
