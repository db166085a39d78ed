// The table of hostile values the tests draw from: what an outside AMQP client may put where
// Warren expects something else. Every kind of input that once crashed, wedged or fooled a
// service has its rows here, so a new decoder is tried against all of them.
public import Foundation
public import WarrenAMQP

public enum HostileValues {
    /// Header values of every AMQP field type that are out of range, not a number, negative or
    /// of the wrong type, for the headers Warren reads as numbers (`x-deadline`, `x-attempts`).
    public static let numbers: [(name: String, value: AMQPFieldValue)] =
        [
            ("double NaN", .double(.nan)),
            ("double +infinity", .double(.infinity)),
            ("double -infinity", .double(-.infinity)),
        ] + wireNumbers

    /// The rows of `numbers` that RabbitMQ relays. It refuses a double that is NaN or infinite:
    /// its parser fails on the header and closes the publisher's connection (541 INTERNAL_ERROR),
    /// so such a value reaches a service only from a broker that relays it; the decoders' unit
    /// tests take them all.
    public static let wireNumbers: [(name: String, value: AMQPFieldValue)] = [
        ("double 1e300", .double(1e300)),
        ("double -1e300", .double(-1e300)),
        ("double 9.3e18 (just past Int64)", .double(9.3e18)),
        ("double -1", .double(-1)),
        ("double 1.5", .double(1.5)),
        ("Int64.max", .int(.max)),
        ("Int64.min", .int(.min)),
        ("-1", .int(-1)),
        ("0", .int(0)),
        ("string 1e300", "1e300"),
        ("string NaN", "NaN"),
        ("string past Int64", "99999999999999999999"),
        ("string -5", "-5"),
        ("empty string", ""),
        ("bool", .bool(true)),
        ("bytes", .bytes(Data([0xff, 0x00, 0xfe]))),
        ("timestamp in the far future", .timestamp(Date(timeIntervalSince1970: 1e15))),
        ("decimal", .decimal(scale: 255, value: .max)),
        ("array", .array([.int(.max), .double(1e300)])),
        ("table", .table(["x": .double(-1e300)])),
        ("void", .void),
    ]

    /// Text for headers and properties that Warren reads as strings.
    public static let strings: [(name: String, value: String)] = [
        ("NUL first", "\u{0}secret"),
        ("NUL inside", "abc\u{0}def"),
        ("terminal escape", "\u{1b}[2J\u{1b}[H"),
        ("C1 control", "a\u{9b}31mred"),
        ("bidi override", "\u{202e}gnp.exe"),
        ("255 bytes", String(repeating: "x", count: 255)),
        ("empty", ""),
        ("emoji", "🐇🕳️"),
    ]

    /// JSON bodies no operation accepts, or that push a decoder to its edges.
    public static let bodies: [(name: String, value: Data)] = [
        ("empty", Data()),
        ("not JSON", Data("not json".utf8)),
        ("invalid UTF-8", Data([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])),
        ("JSON null", Data("null".utf8)),
        ("JSON array", Data("[1,2,3]".utf8)),
        ("nested 10,000 deep", Data((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8)),
        ("huge numbers", Data(#"{"limit":1e300,"amount":-1e300,"id":9223372036854775808,"offset":-9223372036854775809}"#.utf8)),
        ("NaN-like numbers", Data(#"{"limit":"NaN","amount":"Infinity","quantity":1.5}"#.utf8)),
        ("NUL and a lone surrogate", Data(#"{"id":"\u0000","email":"a\u0000@b.c","name":"\ud800"}"#.utf8)),
        ("impossible dates", Data(#"{"since":"2026-02-30T00:00:00Z","until":"2026-13-01T25:61:61Z"}"#.utf8)),
    ]

    /// `json` in the encodings JSON may not come in (RFC 8259 §8.1: UTF-8 only) but Foundation's
    /// decoders read anyway: UTF-16 and UTF-32, in each byte order and with a byte order mark;
    /// and in UTF-8 with a raw NUL inside (JSON escapes it) or a byte that is not UTF-8.
    public static func otherEncodings(of json: String) -> [(name: String, value: Data)] {
        let encodings: [(String, String.Encoding)] = [
            ("UTF-16LE", .utf16LittleEndian), ("UTF-16BE", .utf16BigEndian), ("UTF-16 with a BOM", .utf16),
            ("UTF-32LE", .utf32LittleEndian), ("UTF-32BE", .utf32BigEndian), ("UTF-32 with a BOM", .utf32),
        ]
        let utf8 = Array(json.utf8)
        let middle = utf8.count / 2
        return encodings.compactMap { name, encoding in json.data(using: encoding).map { (name, $0) } } + [
            ("UTF-8 with a raw NUL", Data(utf8[..<middle] + [0] + utf8[middle...])),
            ("UTF-8 with a byte that is not UTF-8", Data(utf8[..<middle] + [0xC0, 0x80] + utf8[middle...])),
        ]
    }

    /// A header table whose encoding is about `bytes` long: near a 128 KiB frame, a copy with a
    /// few more headers no longer fits.
    public static func nearFrameHeaders(bytes: Int = 126_000) -> AMQPTable {
        ["x-padding": .string(String(repeating: "p", count: bytes))]
    }

    /// A table nested `depth` levels deep, each level one key.
    public static func nested(depth: Int) -> AMQPFieldValue {
        var value = AMQPFieldValue.int(1)
        for _ in 0..<depth { value = .table(["n": value]) }
        return value
    }
}
