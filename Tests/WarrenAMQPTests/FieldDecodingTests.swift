import CRabbitMQ
import Foundation
import PropertyBased
import Testing
@testable import WarrenAMQP

/// A field table in its wire form, built by hand so that any kind and any bits can be sent:
/// what a Java, Go or Python client (or an attacker) may put in a header.
enum WireTable {
    static func bigEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    static func entry(_ key: String, _ kind: Character, _ payload: [UInt8]) -> [UInt8] {
        [UInt8(key.utf8.count)] + Array(key.utf8) + [UInt8(ascii: kind.unicodeScalars.first ?? "V")] + payload
    }

    static func table(_ entries: [[UInt8]]) -> Data {
        let body = entries.flatMap { $0 }
        return Data(bigEndian(UInt32(body.count)) + body)
    }

    /// An array nested `depth` times around a void: 5 bytes a level.
    static func nestedArrays(_ depth: Int) -> [UInt8] {
        var value: [UInt8] = [UInt8(ascii: "V")]
        for _ in 0..<depth { value = [UInt8(ascii: "A")] + bigEndian(UInt32(value.count)) + value }
        return value
    }
}

/// How deep a decoded value nests.
func nesting(_ value: AMQPFieldValue) -> Int {
    switch value {
    case .array(let values): return 1 + (values.map(nesting).max() ?? 0)
    case .table(let table): return 1 + (table.values.map(nesting).max() ?? 0)
    default: return 0
    }
}

@Suite("Hostile header values from the wire")
struct FieldDecodingTests {
    /// One header of each kind librabbitmq decodes, with the values that used to trap or wrap.
    static let hostile: [(name: String, kind: Character, payload: [UInt8])] = [
        ("u64 max", "L", WireTable.bigEndian(UInt64.max)),
        ("i64 min", "l", WireTable.bigEndian(Int64.min)),
        ("i64 max", "l", WireTable.bigEndian(Int64.max)),
        ("u32 max", "i", WireTable.bigEndian(UInt32.max)),
        ("timestamp u64 max", "T", WireTable.bigEndian(UInt64.max)),
        ("timestamp 2^63", "T", WireTable.bigEndian(UInt64(1) << 63)),
        ("double NaN", "d", WireTable.bigEndian(Double.nan.bitPattern)),
        ("double +inf", "d", WireTable.bigEndian(Double.infinity.bitPattern)),
        ("double -inf", "d", WireTable.bigEndian((-Double.infinity).bitPattern)),
        ("double 1e300", "d", WireTable.bigEndian((1e300).bitPattern)),
        ("float NaN", "f", WireTable.bigEndian(Float.nan.bitPattern)),
        ("float -inf", "f", WireTable.bigEndian((-Float.infinity).bitPattern)),
        ("decimal scale 255", "D", [255] + WireTable.bigEndian(UInt32.max)),
        ("string not UTF-8", "S", WireTable.bigEndian(UInt32(3)) + [0xFF, 0xC0, 0x80]),
        ("bytes", "x", WireTable.bigEndian(UInt32(2)) + [0x00, 0xFF]),
        ("void", "V", []),
        ("empty table", "F", WireTable.bigEndian(UInt32(0))),
        ("empty array", "A", WireTable.bigEndian(UInt32(0))),
        ("array of a u64 max", "A", WireTable.bigEndian(UInt32(9)) + [UInt8(ascii: "L")] + WireTable.bigEndian(UInt64.max)),
        ("nested 64 deep", "A", Array(WireTable.nestedArrays(64).dropFirst())),
    ]

    @Test("every kind and extreme value decodes, and the decoded headers go back on the wire, without trapping",
          arguments: hostile.map(\.name))
    func hostileValue(name: String) throws {
        let (_, kind, payload) = try #require(Self.hostile.first { $0.name == name })
        let headers = try #require(decodeTable(wire: WireTable.table([WireTable.entry("x-value", kind, payload)])))
        let value = try #require(headers["x-value"])
        #expect(nesting(value) <= WireLimits.maxNesting + 1)
        // Forwarding (a retry, a dead letter) encodes what was decoded: it must not trap either.
        let again = try #require(roundTrip(headers))
        #expect(again.keys.sorted() == ["x-value"])
        let scratch = ScratchPool()
        _ = scratch.properties(AMQPProperties(headers: headers, timestamp: Date(timeIntervalSince1970: 1.8446744073709552e19)))
        // Sending it again is refused only for NaN and infinity, which RabbitMQ itself refuses.
        if case .double(let double) = value, !double.isFinite {
            #expect(throws: AMQPError.self) { try WireLimits.checkTable(headers, "headers") }
        } else {
            #expect(throws: Never.self) { try WireLimits.checkTable(headers, "headers") }
        }
    }

    /// Headers decoding changes, each with what `AMQPProperties.decodingLosses` must say, and
    /// exact ones that must note nothing: a reader that keeps messages as they came (the event
    /// store) refuses the first kind instead of keeping them changed.
    static let losses: [(name: String, entries: [[UInt8]], note: String?)] = [
        ("nested 33 deep", [WireTable.entry("deep", "A", Array(WireTable.nestedArrays(33).dropFirst()))], "\"deep[0][0]"),
        ("nested 2000 deep", [WireTable.entry("deep", "A", Array(WireTable.nestedArrays(2000).dropFirst()))], "nested deeper than 32 levels"),
        ("nested 32 deep", [WireTable.entry("deep", "A", Array(WireTable.nestedArrays(32).dropFirst()))], nil),
        ("u64 above Int64.max", [WireTable.entry("n", "L", WireTable.bigEndian(UInt64(Int64.max) + 1))], "\"n\" is an unsigned integer above"),
        ("u64 at Int64.max", [WireTable.entry("n", "L", WireTable.bigEndian(UInt64(Int64.max)))], nil),
        ("string not UTF-8", [WireTable.entry("s", "S", WireTable.bigEndian(UInt32(3)) + [0xFF, 0xC0, 0x80])], "\"s\" is not valid UTF-8"),
        ("truncated 4-byte sequence, as long as U+FFFD", [WireTable.entry("s", "S", WireTable.bigEndian(UInt32(3)) + [0xF0, 0x90, 0x80])], "not valid UTF-8"),
        ("string that is U+FFFD", [WireTable.entry("s", "S", WireTable.bigEndian(UInt32(3)) + [0xEF, 0xBF, 0xBD])], nil),
        ("name not UTF-8", [[1, 0xFF, UInt8(ascii: "V")]], "header name"),
        ("name given twice", [WireTable.entry("k", "V", []), WireTable.entry("k", "V", [])], "\"k\" appears twice"),
        ("bytes, any", [WireTable.entry("b", "x", WireTable.bigEndian(UInt32(2)) + [0x00, 0xFF])], nil),
    ]

    @Test("what decoding changes is noted, naming the header; what it keeps exactly notes nothing", arguments: losses.map(\.name))
    func lossesAreNoted(name: String) throws {
        let example = try #require(Self.losses.first { $0.name == name })
        let (_, losses) = try #require(decodeTableNotingLosses(wire: WireTable.table(example.entries)))
        if let note = example.note {
            #expect(losses.contains { $0.contains(note) }, "\(losses)")
        } else {
            #expect(losses.isEmpty, "\(losses)")
        }
        #expect(losses.count <= DecodingLosses.limit)
    }

    @Test("an unsigned 64-bit integer above Int64.max saturates instead of wrapping negative")
    func unsignedSaturates() throws {
        let headers = try #require(decodeTable(wire: WireTable.table([WireTable.entry("n", "L", WireTable.bigEndian(UInt64.max))])))
        #expect(headers["n"] == .int(Int64.max))
    }

    @Test("a timestamp of 2^64 - 1 seconds decodes and is written back as the largest timestamp")
    func timestampExtremes() throws {
        let headers = try #require(decodeTable(wire: WireTable.table([WireTable.entry("t", "T", WireTable.bigEndian(UInt64.max))])))
        guard case .timestamp(let date) = headers["t"] else {
            Issue.record("not a timestamp: \(String(describing: headers["t"]))")
            return
        }
        #expect(date.amqpTimestamp == UInt64.max)
        #expect(Date(timeIntervalSince1970: -5).amqpTimestamp == 0)
        #expect(Date(timeIntervalSince1970: .nan).amqpTimestamp == 0)
        #expect(Date(timeIntervalSince1970: .infinity).amqpTimestamp == UInt64.max)
        #expect(ScratchPool().properties(AMQPProperties(timestamp: date)).timestamp == UInt64.max)
        // The message's own timestamp property, as a delivery's properties are decoded.
        var raw = amqp_basic_properties_t()
        raw._flags = UInt32(WARREN_FLAG_TIMESTAMP)
        raw.timestamp = UInt64.max
        let properties = decodeProperties(raw)
        #expect(properties.timestamp.map(\.amqpTimestamp) == UInt64.max)
        #expect(ScratchPool().properties(properties).timestamp == UInt64.max)
    }

    @Test("headers nested thousands deep (a 128 KiB frame holds 26,000 levels) decode only to the nesting bound",
          arguments: [WireLimits.maxNesting, WireLimits.maxNesting + 1, 90, 1_000, 20_000])
    func deepNesting(depth: Int) throws {
        let wire = WireTable.table([WireTable.entry("deep", "A", Array(WireTable.nestedArrays(depth).dropFirst()))])
        // librabbitmq may refuse very deep nesting itself (nil); what it hands over is bounded.
        if let headers = decodeTable(wire: wire) {
            let value = try #require(headers["deep"])
            #expect(nesting(value) <= WireLimits.maxNesting + 1)
            #expect(roundTrip(headers) != nil)
        }
    }

    @Test("any bytes after a table's length decode or are refused, never trap")
    func randomBytes() async {
        await propertyCheck(count: 2_000, input: Gen<UInt8>.value(in: 0...255).array(of: 0...64)) { bytes in
            _ = decodeTable(wire: WireTable.table([bytes]))
            // Also with a plausible key and kind in front.
            for kind in "tbBsuIilLfdDSATFVx" {
                _ = decodeTable(wire: WireTable.table([WireTable.entry("k", kind, bytes)]))
            }
        }
    }

    @Test("any double, integer or unsigned bits in any numeric kind survive decode and re-encode")
    func randomNumbers() async {
        await propertyCheck(count: 2_000, input: Gen<UInt64>.value(), Gen<UInt8>.value(in: 0...5)) { bits, pick in
            let kind: Character = ["L", "l", "T", "d", "f", "i"][Int(pick)]
            let payload = kind == "f" || kind == "i" ? WireTable.bigEndian(UInt32(truncatingIfNeeded: bits)) : WireTable.bigEndian(bits)
            guard let headers = decodeTable(wire: WireTable.table([WireTable.entry("n", kind, payload)])) else {
                Issue.record("a well-formed \(kind) was refused")
                return
            }
            #expect(roundTrip(headers) != nil)
            _ = ScratchPool().properties(AMQPProperties(headers: headers, timestamp: Date(timeIntervalSince1970: Double(bits))))
        }
    }

    @Test("integer(clampedTo:) is inside the range for every double and integer, and nil only for NaN")
    func clampedIntegers() async {
        await propertyCheck(count: 5_000, input: Gen<UInt64>.value(), Gen<Int64>.value(), Gen<Int64>.value()) { bits, a, b in
            let range = min(a, b)...max(a, b)
            let double = Double(bitPattern: bits)
            let fromDouble = AMQPFieldValue.double(double).integer(clampedTo: range)
            #expect((fromDouble == nil) == double.isNaN)
            if let fromDouble { #expect(range.contains(fromDouble)) }
            let fromInt = AMQPFieldValue.int(Int64(bitPattern: bits)).integer(clampedTo: range)
            #expect(fromInt.map(range.contains) == true)
            let fromText = AMQPFieldValue.string(String(Int64(bitPattern: bits))).integer(clampedTo: range)
            #expect(fromText == fromInt)
        }
    }

    static let clampTable: [(AMQPFieldValue, Int64?)] = [
        (.double(1e300), 100), (.double(-1e300), 0), (.double(.nan), nil), (.double(.infinity), 100),
        (.double(-.infinity), 0), (.double(41.6), 42), (.int(Int64.max), 100), (.int(Int64.min), 0), (.int(-1), 0),
        (.string("1e300"), nil), (.string("NaN"), nil), (.string("99999999999999999999"), 100), (.string("-99999999999999999999"), 0),
        (.string("+7"), 7), (.string("--7"), nil), (.string(""), nil), (.string(" 7"), nil), (.bool(true), nil),
        (.table(["a": 1]), nil), (.array([1]), nil), (.bytes(Data([1])), nil), (.timestamp(Date()), nil),
        (.decimal(scale: 0, value: 5), nil), (.void, nil),
    ]

    @Test("integer(clampedTo:) on the table of hostile values", arguments: clampTable)
    func clampedTable(value: AMQPFieldValue, expected: Int64?) {
        #expect(value.integer(clampedTo: 0...100) == expected)
    }

    @Test("URL numbers outside what AMQP carries are refused, not trapped on at connect", arguments: [
        "heartbeat=65536", "heartbeat=9223372036854775807", "heartbeat=-1", "frame_max=4294967296", "frame_max=99999999999999999999",
        "connection_timeout=9223372036854775807", "connection_timeout=0", "channel_max=70000",
    ])
    func urlNumbers(query: String) {
        #expect(throws: AMQPError.self) { try AMQPConfiguration(url: "amqp://localhost/?\(query)") }
    }
}
