import Foundation
import Testing
import WarrenAMQP
import WarrenContract

@Suite("AMQP field values <-> JSON: one conversion")
struct JSONValueTests {
    @Test("headers that JSON holds as they are come back as they were")
    func roundTrip() throws {
        let headers: AMQPTable = [
            "s": .string("ünï\u{0}code"), "i": .int(Int64.min), "d": .double(0.5), "b": .bool(true), "v": .void,
            "a": .array([.int(1), .string("x"), .table(["k": .bool(false)])]), "t": .table(["n": .int(42)]),
        ]
        let json = try JSONEncoder().encode(headers.mapValues(JSONValue.init))
        let back = try JSONDecoder().decode([String: JSONValue].self, from: json).mapValues(AMQPFieldValue.init(jsonValue:))
        #expect(back == headers)
        // The JSONSerialization path (the CLI's scanner, nested values) reads the same document
        // the same way, but for Int64.min: Foundation hands -9223372036854775808 over as a double.
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        var expected = headers
        expected["i"] = .double(-9.223372036854775808e18)
        #expect(object.mapValues(AMQPFieldValue.init(json:)) == expected)
    }

    @Test("what JSON cannot hold is written in the contract's form")
    func lossy() throws {
        let date = Date(timeIntervalSince1970: 1_763_648_022.123)
        #expect(JSONValue(.timestamp(date)) == .string("2025-11-20T14:13:42.123Z"))
        #expect(JSONValue(.bytes(Data([0, 255]))) == .string("AP8="))
        #expect(JSONValue(.decimal(scale: 2, value: 1999)) == .double(19.99))
        for value in [Double.nan, .infinity, -.infinity] {
            let text = String(decoding: try JSONEncoder().encode(JSONValue(.double(value))), as: UTF8.self)
            #expect(text == "null", "JSON has no \(value)")
        }
    }

    @Test("an integer beyond Int64 stays a number, never wrapping")
    func bigInteger() throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(#"{"n":18446744073709551615}"#.utf8)) as? [String: Any])
        #expect(AMQPFieldValue(json: object["n"] as Any) == .double(Double(UInt64.max)))
    }
}
