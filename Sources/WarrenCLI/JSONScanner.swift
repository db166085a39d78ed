import Foundation
import WarrenAMQP
import WarrenContract

/// Just enough of a JSON reader to take an `events.query` page apart without rebuilding what a
/// replay passes on: a body is kept as the bytes the event store sent (exactly as stored, and
/// no parse-and-print per event, which cost more than publishing it).
struct JSONScanner {
    struct Malformed: Error {
        let offset: Int
        /// What is wrong there, for the operator.
        var reason = "is not JSON"
    }

    private let bytes: [UInt8]
    private var index = 0

    init(_ data: Data) {
        bytes = [UInt8](data)
    }

    /// Reads an object, handing each key to `field`, which must consume the value.
    mutating func readObject(_ field: (inout JSONScanner, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if try peek() == UInt8(ascii: "}") { index += 1; return }
        repeat {
            let key = try readString()
            try expect(UInt8(ascii: ":"))
            try field(&self, key)
        } while try separator(closing: UInt8(ascii: "}"))
    }

    mutating func readArray(_ element: (inout JSONScanner) throws -> Void) throws {
        try expect(UInt8(ascii: "["))
        if try peek() == UInt8(ascii: "]") { index += 1; return }
        repeat {
            try element(&self)
        } while try separator(closing: UInt8(ascii: "]"))
    }

    /// A string, or nil for `null`.
    mutating func readOptionalString() throws -> String? {
        if try peek() == UInt8(ascii: "n") {
            _ = try skipValue()
            return nil
        }
        return try readString()
    }

    mutating func readString() throws -> String {
        let range = try skipValue()
        guard bytes[range.lowerBound] == UInt8(ascii: "\"") else { throw Malformed(offset: range.lowerBound) }
        let inner = bytes[(range.lowerBound + 1)..<(range.upperBound - 1)]
        if !inner.contains(UInt8(ascii: "\\")) { return String(decoding: inner, as: UTF8.self) }
        // Escapes are rare in ids and types: let Foundation decode those.
        guard let text = try? JSONSerialization.jsonObject(with: Data(bytes[range]), options: .fragmentsAllowed) as? String else {
            throw Malformed(offset: range.lowerBound)
        }
        return text
    }

    mutating func readInt() throws -> Int64 {
        let range = try skipValue()
        guard let value = Int64(String(decoding: bytes[range], as: UTF8.self)) else {
            throw Malformed(offset: range.lowerBound, reason: "holds a position that is not a whole number from Int64's range")
        }
        return value
    }

    /// The raw bytes of the next value, whatever it is.
    mutating func readRaw() throws -> Data {
        Data(bytes[try skipValue()])
    }

    /// A header value: strings, numbers, booleans and null directly, anything nested through Foundation.
    mutating func readFieldValue() throws -> AMQPFieldValue {
        let first = try peek()
        let range = try skipValue()
        let text = String(decoding: bytes[range], as: UTF8.self)
        switch first {
        case UInt8(ascii: "\""):
            index = range.lowerBound
            return .string(try readString())
        case UInt8(ascii: "t"): return .bool(true)
        case UInt8(ascii: "f"): return .bool(false)
        case UInt8(ascii: "n"): return .void
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard let value = try? JSONSerialization.jsonObject(with: Data(bytes[range])) else {
                // Valid JSON can still hold a number no Swift type holds (1e400).
                throw Malformed(offset: range.lowerBound, reason: "holds a header value that is not JSON or has a number out of range")
            }
            return AMQPFieldValue(json: value)
        default:
            if let value = Int64(text) { return .int(value) }
            // 1e999 reads as infinity, which RabbitMQ cannot hold: it closes the connection
            // (541 INTERNAL_ERROR). Such a number travels as its JSON text instead.
            if let value = Double(text) { return value.isFinite ? .double(value) : .string(text) }
            throw Malformed(offset: range.lowerBound)
        }
    }

    /// Steps over the next value and returns where it was.
    @discardableResult
    mutating func skipValue() throws -> Range<Int> {
        let start = try skipWhitespaceToValue()
        switch bytes[start] {
        case UInt8(ascii: "\""):
            index = start + 1
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""): index += 1; return start..<index
                default: index += 1
                }
            }
            throw Malformed(offset: start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var inString = false
            while index < bytes.count {
                let byte = bytes[index]
                index += 1
                if inString {
                    if byte == UInt8(ascii: "\\") { index += 1 } else if byte == UInt8(ascii: "\"") { inString = false }
                    continue
                }
                switch byte {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return start..<index }
                default: break
                }
            }
            throw Malformed(offset: start)
        default:
            while index < bytes.count, !Self.endsScalar(bytes[index]) { index += 1 }
            guard index > start else { throw Malformed(offset: start) }
            return start..<index
        }
    }

    private static func endsScalar(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") || isSpace(byte)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    private mutating func skipWhitespaceToValue() throws -> Int {
        while index < bytes.count, Self.isSpace(bytes[index]) { index += 1 }
        guard index < bytes.count else { throw Malformed(offset: index) }
        return index
    }

    private mutating func peek() throws -> UInt8 {
        bytes[try skipWhitespaceToValue()]
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard try peek() == byte else { throw Malformed(offset: index) }
        index += 1
    }

    /// After a member: true at a comma (another follows), false at the closing bracket.
    private mutating func separator(closing: UInt8) throws -> Bool {
        let byte = try peek()
        index += 1
        if byte == UInt8(ascii: ",") { return true }
        if byte == closing { return false }
        throw Malformed(offset: index - 1)
    }
}
