import CRabbitMQ
import Foundation

// MARK: - Decoding what the library hands back (it owns the memory: copy it all out).

extension String {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard let base = bytes.bytes, bytes.len > 0 else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }
}

extension String {
    /// The text, and whether it is exactly the bytes that came: bytes that are not UTF-8 are
    /// repaired to U+FFFD, which the caller may not keep silently.
    static func decoding(amqpBytes bytes: amqp_bytes_t) -> (String, exact: Bool) {
        guard let base = bytes.bytes, bytes.len > 0 else { return ("", true) }
        let buffer = UnsafeRawBufferPointer(start: base, count: bytes.len)
        // Validated as it is copied: on every delivery, so no second pass over the bytes.
        if let text = String(validating: buffer, as: UTF8.self) { return (text, true) }
        return (String(decoding: buffer, as: UTF8.self), false)
    }
}

extension Data {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard let base = bytes.bytes, bytes.len > 0 else {
            self = Data()
            return
        }
        self = Data(bytes: base, count: bytes.len)
    }
}
