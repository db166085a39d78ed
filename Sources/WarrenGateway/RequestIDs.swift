import Foundation
import Synchronization

/// Random (v4) UUIDs for request and message ids. Foundation's `UUID()` opens, reads and closes
/// /dev/urandom for each one: three system calls, and 2 UUIDs per request made them the
/// gateway's most frequent system calls (strace -c). Here the random bytes are read 4 KiB at a
/// time from one open file.
final class RequestIDs: Sendable {
    private struct Pool {
        var bytes = [UInt8](repeating: 0, count: 4096)
        var offset = 4096
    }

    private let source = FileHandle(forReadingAtPath: "/dev/urandom")
    private let pool = Mutex(Pool())

    func next() -> String {
        let random = pool.withLock { pool -> uuid_t? in
            if pool.offset + 16 > pool.bytes.count {
                guard let data = try? source?.read(upToCount: pool.bytes.count), data.count == pool.bytes.count else { return nil }
                pool.bytes = [UInt8](data)
                pool.offset = 0
            }
            var uuid: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            let offset = pool.offset
            pool.bytes.withUnsafeBytes { source in
                withUnsafeMutableBytes(of: &uuid) { target in
                    target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + 16]))
                }
            }
            pool.offset += 16
            return uuid
        }
        guard var uuid = random else { return UUID().uuidString.lowercased() }
        return withUnsafeMutableBytes(of: &uuid) { bytes in
            bytes[6] = (bytes[6] & 0x0F) | 0x40  // version 4
            bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
            return Self.lowercaseText(bytes)
        }
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase, written at once (`uuidString` then
    /// `lowercased()` builds the string twice).
    static func lowercaseText(_ bytes: UnsafeMutableRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: 36) { text in
            var position = 0
            for (index, byte) in bytes.prefix(16).enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 {
                    text[position] = UInt8(ascii: "-")
                    position += 1
                }
                text[position] = hexDigit(byte >> 4)
                text[position + 1] = hexDigit(byte & 0x0F)
                position += 2
            }
            return position
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }
}
