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

extension Data {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard let base = bytes.bytes, bytes.len > 0 else {
            self = Data()
            return
        }
        self = Data(bytes: base, count: bytes.len)
    }
}
