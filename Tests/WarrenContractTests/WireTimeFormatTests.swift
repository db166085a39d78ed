import Foundation
import Testing
import WarrenContract

@Suite("Wire time: one writer, one parser")
struct WireTimeContractTests {
    @Test(
        "what is written reads back as the same millisecond",
        arguments: [0, 1, -1, 1_763_648_022_123, -62_135_596_800_000, 253_402_300_799_999, 951_782_400_000, -2_208_988_800_001] as [Int64])
    func roundTrip(milliseconds: Int64) throws {
        let date = Date(timeIntervalSince1970: Double(milliseconds) / 1000)
        let text = WireTime.format(date)
        let read = try WireTime(parsing: text)
        #expect(read.secondsSince1970 * 1000 + Int64(read.nanoseconds / 1_000_000) == milliseconds, "\(text)")
        #expect(WireTime.format(read.date) == text)
        #expect(text.utf8.count == 24, "fixed width: \(text)")
    }

    @Test("the written form is the store's fixed-width UTC form")
    func form() {
        #expect(WireTime.format(Date(timeIntervalSince1970: 1_763_648_022.5)) == "2025-11-20T14:13:42.500Z")
        #expect(WireTime.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(WireTime.format(Date(timeIntervalSince1970: -0.001)) == "1969-12-31T23:59:59.999Z")
    }

    @Test(
        "dates no four-digit year holds are clamped, never trapping",
        arguments: [
            (Double.nan, "1970-01-01T00:00:00.000Z"), (.infinity, "9999-12-31T23:59:59.999Z"), (-.infinity, "0000-01-01T00:00:00.000Z"),
            (1e300, "9999-12-31T23:59:59.999Z"), (-1e300, "0000-01-01T00:00:00.000Z"), (Double(UInt64.max), "9999-12-31T23:59:59.999Z"),
        ])
    func clamped(seconds: Double, expected: String) {
        #expect(WireTime.format(Date(timeIntervalSince1970: seconds)) == expected)
    }

    @Test(
        "impossible or malformed times are refused with a reason",
        arguments: [
            "", "2026-02-30", "2026-02-29T00:00:00Z", "2026-11-20T24:00:00Z", "2026-11-20T23:59:60Z", "2026-11-20T14:13:42",
            "2026-11-20T14:13Z", "0000-01-01", "2026-13-01", "2026-11-20T14:13:42.Z", "2026-11-20T14:13:42.1234567890Z",
            "2026-11-20T14:13:42+24:00", "2026-11-20T14:13:42Zjunk", "２０２６-11-20", "2026-11-20T14:13:42\u{0}Z", "NaN",
            String(repeating: "9", count: 100_000), "9999-12-31T23:59:59-01:00",
        ])
    func hostile(text: String) {
        #expect(throws: WireTime.Invalid.self) { try WireTime(parsing: text) }
        #expect(WireTime.parse(text) == nil)
    }

    @Test("offsets and days read as the instant they name")
    func offsets() throws {
        #expect(try WireTime(parsing: "2026-11-20T15:13:42.5+01:00") == WireTime(parsing: "2026-11-20T14:13:42.500Z"))
        #expect(try WireTime(parsing: "2026-11-20").utcMilliseconds == "2026-11-20T00:00:00.000Z")
        #expect(try WireTime(parsing: "2024-02-29").utcMilliseconds == "2024-02-29T00:00:00.000Z")
    }
}

@Suite("Wire time: parsed and written again, the same text")
struct WireTimeTextRoundTripTests {
    @Test(
        "a stored timestamp read into a Date and written again is unchanged",
        arguments: ["2025-11-20T14:13:42.123Z", "2026-01-01T00:00:00.001Z", "1969-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z",
                    "0001-01-01T00:00:00.000Z", "2001-01-01T00:00:00.000Z", "2038-01-19T03:14:07.999Z"])
    func textRoundTrip(text: String) throws {
        #expect(WireTime.format(try WireTime(parsing: text).date) == text)
    }
}
