import Foundation
import Testing
import WarrenContract

/// The one parser of times read from outside, and the validation helpers every request type uses.
@Suite("Wire times and field checks")
struct WireTimeTests {
    /// Times that exist, and the UTC instant each stands for (stored form, milliseconds).
    static let valid: [(String, String)] = [
        ("2026-11-20", "2026-11-20T00:00:00.000Z"),
        ("2026-11-20T14:13:42Z", "2026-11-20T14:13:42.000Z"),
        ("2026-11-20t14:13:42z", "2026-11-20T14:13:42.000Z"),
        ("2026-11-20T15:13:42.5+01:00", "2026-11-20T14:13:42.500Z"),
        ("2026-11-20T14:13:42.123456789Z", "2026-11-20T14:13:42.123Z"),
        ("2026-11-20T00:30:00+01:00", "2026-11-19T23:30:00.000Z"),
        ("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00.000Z"),
        ("2026-01-01T00:00:00-23:59", "2026-01-01T23:59:00.000Z"),
        ("2024-02-29T12:00:00Z", "2024-02-29T12:00:00.000Z"),
        ("2000-02-29", "2000-02-29T00:00:00.000Z"),
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59.000Z"),
        ("2016-12-31T23:59:59Z", "2016-12-31T23:59:59.000Z"),
    ]

    @Test("a time that exists is read exactly", arguments: valid)
    func validTimes(text: String, utc: String) throws {
        let time = try WireTime(parsing: text)
        #expect(time.utcMilliseconds == utc)
        #expect(WireTime.parse(utc)?.utcMilliseconds == utc, "the stored form reads back as itself")
    }

    /// Times that do not exist or are not in the wire's form; each must be refused, never rolled over.
    static let invalid: [String] = [
        "2026-02-30", "2026-02-29", "1900-02-29", "2026-13-01", "2026-00-10", "2026-04-31", "2026-01-00", "2026-01-32",
        "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2016-12-31T23:59:60Z",
        "2026-01-01T23:59:61Z", "2026-01-01T12:00:00+24:00", "2026-01-01T12:00:00+01:60", "2026-01-01T12:00:00+0100",
        "2026-01-01T12:00:00", "2026-01-01T12:00Z", "2026-01-01 12:00:00Z", "2026-01-01T12:00:00.Z",
        "2026-01-01T12:00:00.1234567890Z", "2026-01-01T12:00:00ZZ", "2026-01-01T12:00:00Z ", " 2026-01-01",
        "0000-01-01", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "10000-01-01", "26-01-01",
        "2026-1-01", "２０２６-01-01", "2026-01-01\u{0}", "\u{0}2026-01-01", "2026-01-01T12:00:00\u{0}Z", "",
        "yesterday", "1732111222", "2026-01-01T12:00:00+01:00" + String(repeating: "0", count: 100),
    ]

    @Test("an impossible or malformed time is refused", arguments: invalid)
    func invalidTimes(text: String) {
        #expect(WireTime.parse(text) == nil, "\(text.debugDescription) was read as \(WireTime.parse(text).map(\.utcMilliseconds) ?? "")")
        #expect(throws: ServiceError.self) { try Check.time(text, "since") }
    }

    @Test("the error names the field and says what is wrong")
    func message() {
        let error = #expect(throws: ServiceError.self) { try Check.time("2026-02-30", "since") }
        #expect(error?.code == .invalid)
        #expect(error?.message.contains("'since'") == true)
        #expect(error?.message.contains("February 2026, which has 28 days") == true, "\(error?.message ?? "")")
        let leap = #expect(throws: ServiceError.self) { try Check.time("2016-12-31T23:59:60Z", "until") }
        #expect(leap?.message.contains("leap second") == true)
    }

    @Test("the date is the instant the text names")
    func dates() throws {
        #expect(try WireTime(parsing: "1970-01-01T00:00:01.5Z").date == Date(timeIntervalSince1970: 1.5))
        #expect(try WireTime(parsing: "2026-11-20T15:13:42+01:00") == WireTime(parsing: "2026-11-20T14:13:42Z"))
        #expect(try WireTime(parsing: "2026-11-20T14:13:42Z") < WireTime(parsing: "2026-11-20T14:13:42.001Z"))
    }

    struct Stamped: Decodable { var at: Date }

    @Test("a date field in a request body is read by the same parser: an impossible one is invalid, naming the field",
          arguments: ["2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2016-12-31T23:59:60Z", "2026-13-01T00:00:00Z"])
    func jsonDates(text: String) {
        let error = #expect(throws: ServiceError.self) { try WireJSON.decode(Stamped.self, from: Data(#"{"at":"\#(text)"}"#.utf8)) }
        #expect(error?.code == .invalid)
        #expect(error?.message.contains("'at'") == true, "\(error?.message ?? "")")
    }

    @Test("a date field that exists decodes; what Warren encodes decodes back")
    func jsonRoundTrip() throws {
        let decoded = try WireJSON.decode(Stamped.self, from: Data(#"{"at":"2026-11-20T15:13:42.25+01:00"}"#.utf8))
        #expect(decoded.at == Date(timeIntervalSince1970: 1_795_184_022.25))
        struct Out: Encodable { var at: Date }
        let encoded = try WireJSON.encode(Out(at: Date(timeIntervalSince1970: 1_795_184_022)))
        #expect(try WireJSON.decode(Stamped.self, from: encoded).at == Date(timeIntervalSince1970: 1_795_184_022))
    }

    /// Strings no checked field may hold: NUL anywhere.
    static let withNUL = ["\u{0}", "\u{0}secret-one", "abcdefgh\u{0}OTHER", "tail\u{0}"]

    @Test("a string with NUL is invalid in every length-checked field, naming it", arguments: withNUL)
    func nul(text: String) {
        let error = #expect(throws: ServiceError.self) { try Check.length(text, "sku", 1...64) }
        #expect(error?.message.contains("'sku'") == true)
        #expect(error?.message.contains("NUL") == true)
        #expect(throws: ServiceError.self) { try Check.email("a\(text)@example.com", "email") }
        #expect(throws: ServiceError.self) { try Check.singleLine(text, "name") }
    }

    @Test("lengths count code points, as JSON Schema does: combining marks count")
    func lengths() throws {
        let one = "e" + String(repeating: "\u{301}", count: 200)  // one Character, 201 code points
        #expect(throws: ServiceError.self) { try Check.length(one, "name", 1...100) }
        try Check.length(String(repeating: "é", count: 100), "name", 1...100)
        #expect(throws: ServiceError.self) { try Check.email(String(repeating: "a", count: 250) + "@b.co", "email") }
    }

    @Test("control characters are not part of a name or an email",
          arguments: ["line\nbreak", "tab\there", "esc\u{1B}[2J", "del\u{7F}", "c1\u{85}", "bell\u{7}"])
    func controls(text: String) {
        #expect(throws: ServiceError.self) { try Check.singleLine(text, "name") }
        #expect(throws: ServiceError.self) { try Check.email("x\(text)@example.com", "email") }
    }

    @Test("ids compare in one form: a UUID in lower case, anything else as it is")
    func canonicalIDs() {
        let id = "9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d"
        #expect(Check.canonicalID(id.uppercased()) == id)
        #expect(Check.canonicalID("9B2f3C1e-8d4A-4f6b-9c2D-1e5f7a8b9c0d") == id)
        #expect(Check.canonicalID("Not-A-UUID") == "Not-A-UUID")
        #expect(Check.canonicalID(id.uppercased() + "\u{0}") == id.uppercased() + "\u{0}")
        #expect(Check.isUUID(id.uppercased()))
        #expect(!Check.isUUID(id + " "))
    }
}
