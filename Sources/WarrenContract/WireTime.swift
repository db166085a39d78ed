public import Foundation

/// A time as the wire writes it, read strictly: RFC 3339 (`2026-11-20T14:13:42Z`,
/// `2026-11-20T15:13:42.5+01:00`) or a day alone (`2026-11-20`, midnight UTC).
///
/// The one parser for every time read from outside (dates in request bodies through
/// `WireJSON`, `events.query`'s `since`/`until` from any client, the gateway's `GET /events`
/// included, and the CLI's `--since`/`--until`): Foundation's ISO 8601 parser
/// rolls impossible dates over (`2026-02-30` becomes 2 March, `24:00:00` the next day), so a
/// filter would silently mean another time. Here such a time is refused with the reason.
/// Leap seconds (`:60`) are refused too: `Date` cannot hold them.
public struct WireTime: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Whole seconds since 1970-01-01T00:00:00Z (negative before it).
    public let secondsSince1970: Int64
    /// Nanoseconds within that second, 0 to 999,999,999 (digits past the ninth are refused).
    public let nanoseconds: Int32

    /// Why a text is not a wire time, in words for an error message.
    public struct Invalid: Error, Sendable, Equatable, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// The longest text read: a full time with nine fractional digits and an offset is 35 bytes.
    static let maxLength = 40
    /// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, so that the UTC form keeps four digits.
    static let earliest: Int64 = -62_135_596_800
    static let latest: Int64 = 253_402_300_799

    public init(secondsSince1970: Int64, nanoseconds: Int32 = 0) {
        self.secondsSince1970 = secondsSince1970
        self.nanoseconds = nanoseconds
    }

    /// Reads `text`; throws `Invalid` naming what is wrong (an impossible day, hour 24, a
    /// leap second, a missing offset, an offset out of range, a year outside 0001–9999, …).
    public init(parsing text: String) throws(Invalid) {
        // The text's own UTF-8, without a copy: a replay reads one time per event.
        var text = text
        self = try text.withUTF8 { Self.read($0) }.get()
    }

    private static func read(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<WireTime, Invalid> {
        do throws(Invalid) {
            return .success(try readThrowing(bytes))
        } catch {
            return .failure(error)
        }
    }

    private static func readThrowing(_ bytes: UnsafeBufferPointer<UInt8>) throws(Invalid) -> WireTime {
        func fail(_ reason: String) -> Invalid { Invalid(reason: reason) }
        guard bytes.count <= Self.maxLength else { throw fail("it is longer than \(Self.maxLength) characters") }
        var index = 0
        func digits(_ count: Int, _ what: String) throws(Invalid) -> Int {
            guard index + count <= bytes.count else { throw fail("it ends before the \(what)") }
            var value = 0
            for offset in index..<index + count {
                let digit = Int(bytes[offset]) - 48
                guard (0...9).contains(digit) else { throw fail("the \(what) must be \(count) digits") }
                value = value * 10 + digit
            }
            index += count
            return value
        }
        func expect(_ characters: String, _ what: String) throws(Invalid) -> UInt8 {
            guard index < bytes.count, characters.utf8.contains(bytes[index]) else { throw fail("expected \(what) at position \(index + 1)") }
            index += 1
            return bytes[index - 1]
        }

        let year = try digits(4, "year")
        _ = try expect("-", "'-' after the year")
        let month = try digits(2, "month")
        _ = try expect("-", "'-' after the month")
        let day = try digits(2, "day")
        guard year >= 1 else { throw fail("year 0000 is out of range (0001 to 9999)") }
        guard (1...12).contains(month) else { throw fail("month \(month) does not exist (01 to 12)") }
        let monthDays = Self.days(inMonth: month, year: year)
        guard (1...monthDays).contains(day) else {
            throw fail("day \(day) does not exist in \(Self.monthNames[month - 1]) \(year), which has \(monthDays) days")
        }
        let days = Self.daysSince1970(year: year, month: month, day: day)
        guard index < bytes.count else { return WireTime(secondsSince1970: Int64(days) * 86_400) }

        _ = try expect("Tt", "'T' between the date and the time")
        let hour = try digits(2, "hour")
        _ = try expect(":", "':' after the hour")
        let minute = try digits(2, "minute")
        _ = try expect(":", "':' after the minutes (seconds are required)")
        let second = try digits(2, "second")
        guard hour <= 23 else { throw fail("hour \(hour) does not exist (00 to 23; write 24:00 as 00:00 of the next day)") }
        guard minute <= 59 else { throw fail("minute \(minute) does not exist (00 to 59)") }
        guard second <= 59 else {
            throw fail(second == 60 ? "second 60 (a leap second) cannot be represented; use :59" : "second \(second) does not exist (00 to 59)")
        }
        var nanoseconds = 0
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            var count = 0
            while index < bytes.count, (48...57).contains(bytes[index]) {
                guard count < 9 else { throw fail("fractional seconds have at most 9 digits") }
                nanoseconds = nanoseconds * 10 + Int(bytes[index]) - 48
                count += 1
                index += 1
            }
            guard count > 0 else { throw fail("a digit must follow the decimal point") }
            for _ in count..<9 { nanoseconds *= 10 }
        }
        guard index < bytes.count else { throw fail("it needs a time zone: Z for UTC, or an offset such as +01:00") }
        var offsetSeconds = 0
        switch try expect("Zz+-", "Z or an offset such as +01:00") {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            break
        case let sign:
            let offsetHours = try digits(2, "offset's hours")
            _ = try expect(":", "':' in the offset")
            let offsetMinutes = try digits(2, "offset's minutes")
            guard offsetHours <= 23, offsetMinutes <= 59 else { throw fail("the offset must be from -23:59 to +23:59") }
            offsetSeconds = (offsetHours * 3_600 + offsetMinutes * 60) * (sign == UInt8(ascii: "-") ? -1 : 1)
        }
        guard index == bytes.count else { throw fail("unexpected text after the time zone") }
        // Every term is bounded by the checks above: far from overflowing 64 bits.
        let seconds = Int64(days) * 86_400 + Int64(hour * 3_600 + minute * 60 + second - offsetSeconds)
        guard (Self.earliest...Self.latest).contains(seconds) else { throw fail("in UTC it falls outside the years 0001 to 9999") }
        return WireTime(secondsSince1970: seconds, nanoseconds: Int32(nanoseconds))
    }

    /// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z in epoch milliseconds: the
    /// range a four-digit year can write, so that text order stays time order.
    static let earliestWrittenMilliseconds: Int64 = -62_167_219_200_000
    static let latestWrittenMilliseconds: Int64 = 253_402_300_799_999

    /// `date` truncated to milliseconds (after rounding to the microsecond), for writing. Any date, also one read off the wire (an
    /// AMQP timestamp may be up to 2^64 - 1 seconds), is clamped into the four-digit years
    /// 0000–9999; NaN is 1970. Never traps.
    public init(clamping date: Date) {
        // To the microsecond first: `Date` keeps its time from 2001, so a millisecond read off
        // the wire (`…42.123Z`, or -0.001 s) comes back a hair below it and would be cut a
        // millisecond short.
        let milliseconds = ((date.timeIntervalSince1970 * 1_000_000).rounded() / 1000).rounded(.down)
        let clamped: Int64 =
            if milliseconds.isNaN {
                0
            } else if milliseconds <= Double(Self.earliestWrittenMilliseconds) {
                Self.earliestWrittenMilliseconds
            } else if milliseconds >= Double(Self.latestWrittenMilliseconds) {
                Self.latestWrittenMilliseconds
            } else {
                Int64(milliseconds)  // in range and whole: exact
            }
        let (seconds, remainder) = clamped.quotientAndRemainder(dividingBy: 1000)
        self.init(
            secondsSince1970: remainder < 0 ? seconds - 1 : seconds, nanoseconds: Int32((remainder + 1000) % 1000) * 1_000_000)
    }

    /// `WireTime(clamping: date).utcMilliseconds`: the one form Warren writes times in (the
    /// event store's stored timestamps, header timestamps as JSON, the CLI's output).
    public static func format(_ date: Date) -> String {
        WireTime(clamping: date).utcMilliseconds
    }

    /// The time, or nil if `text` is not a wire time; `init(parsing:)` says why.
    public static func parse(_ text: String) -> WireTime? {
        try? WireTime(parsing: text)
    }

    public var date: Date {
        Date(timeIntervalSince1970: Double(secondsSince1970) + Double(nanoseconds) / 1e9)
    }

    /// `2026-11-20T14:13:42.123Z`: UTC, milliseconds (truncated), fixed width, so that
    /// comparing two such texts compares the times (the event store's stored form).
    public var utcMilliseconds: String {
        let (days, secondOfDay) = secondsSince1970.quotientAndRemainder(dividingBy: 86_400)
        let (day, second) = secondOfDay < 0 ? (days - 1, secondOfDay + 86_400) : (days, secondOfDay)
        let (year, month, dayOfMonth) = Self.civil(daysSince1970: day)
        return "\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(dayOfMonth, 2))T\(Self.pad(Int(second / 3_600), 2))"
            + ":\(Self.pad(Int(second % 3_600 / 60), 2)):\(Self.pad(Int(second % 60), 2)).\(Self.pad(Int(nanoseconds / 1_000_000), 3))Z"
    }

    public var description: String { utcMilliseconds }

    public static func < (lhs: WireTime, rhs: WireTime) -> Bool {
        (lhs.secondsSince1970, lhs.nanoseconds) < (rhs.secondsSince1970, rhs.nanoseconds)
    }

    // MARK: - The proleptic Gregorian calendar (Howard Hinnant's days_from_civil / civil_from_days)

    private static let monthNames = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December",
    ]

    static func days(inMonth month: Int, year: Int) -> Int {
        switch month {
        case 2: year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    static func daysSince1970(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(daysSince1970 days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = Int(days) + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

extension Check {
    /// A wire time (`WireTime`), or `invalid` naming the field and what is wrong with it.
    @discardableResult
    public static func time(_ text: String, _ field: String) throws(ServiceError) -> WireTime {
        do throws(WireTime.Invalid) {
            return try WireTime(parsing: text)
        } catch {
            throw .invalid(
                "field '\(field)' must be an ISO 8601 time such as 2026-11-20T14:13:42Z (an offset such as +01:00 instead of Z, "
                    + "fractional seconds allowed) or a date such as 2026-11-20: \(error.reason)")
        }
    }
}
