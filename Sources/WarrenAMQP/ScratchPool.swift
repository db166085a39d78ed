import CRabbitMQ
import Foundation

/// Per-call memory for what librabbitmq reads but does not own: strings, tables and properties
/// passed to a publish or a declare. Everything allocated lives until `recycle()`, which the
/// I/O thread calls after each job; this keeps Swift string storage from dangling under
/// `amqp_bytes_t` (see LIBRABBITMQ.md on `amqp_cstring_bytes`).
final class ScratchPool {
    private var pool = amqp_pool_t()

    init() { init_amqp_pool(&pool, 16 * 1024) }
    deinit { empty_amqp_pool(&pool) }

    func recycle() { recycle_amqp_pool(&pool) }

    func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    func bytes(_ data: Data) -> amqp_bytes_t {
        data.withUnsafeBytes { bytes($0) }
    }

    private func bytes(_ buffer: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return amqp_empty_bytes }
        var out = amqp_bytes_t()
        amqp_pool_alloc_bytes(&pool, buffer.count, &out)
        guard let destination = out.bytes else { return amqp_empty_bytes }
        destination.copyMemory(from: base, byteCount: buffer.count)
        return out
    }

    func table(_ table: AMQPTable) -> amqp_table_t {
        guard !table.isEmpty, let raw = amqp_pool_alloc(&pool, MemoryLayout<amqp_table_entry_t>.stride * table.count) else {
            return amqp_empty_table
        }
        let entries = raw.bindMemory(to: amqp_table_entry_t.self, capacity: table.count)
        for (index, (key, value)) in table.enumerated() {
            entries[index] = amqp_table_entry_t(key: bytes(key), value: field(value))
        }
        return amqp_table_t(num_entries: Int32(table.count), entries: entries)
    }

    private func field(_ value: AMQPFieldValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .bool(let bool):
            field.kind = kind(AMQP_FIELD_KIND_BOOLEAN)
            field.value.boolean = bool ? 1 : 0
        case .int(let int):
            field.kind = kind(AMQP_FIELD_KIND_I64)
            field.value.i64 = int
        case .double(let double):
            field.kind = kind(AMQP_FIELD_KIND_F64)
            field.value.f64 = double
        case .string(let string):
            field.kind = kind(AMQP_FIELD_KIND_UTF8)
            field.value.bytes = bytes(string)
        case .bytes(let data):
            field.kind = kind(AMQP_FIELD_KIND_BYTES)
            field.value.bytes = bytes(data)
        case .timestamp(let date):
            field.kind = kind(AMQP_FIELD_KIND_TIMESTAMP)
            field.value.u64 = date.amqpTimestamp
        case .decimal(let scale, let value):
            field.kind = kind(AMQP_FIELD_KIND_DECIMAL)
            field.value.decimal = amqp_decimal_t(decimals: scale, value: value)
        case .array(let values):
            field.kind = kind(AMQP_FIELD_KIND_ARRAY)
            field.value.array = array(values)
        case .table(let table):
            field.kind = kind(AMQP_FIELD_KIND_TABLE)
            field.value.table = self.table(table)
        case .void:
            field.kind = kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }

    private func array(_ values: [AMQPFieldValue]) -> amqp_array_t {
        guard !values.isEmpty, let raw = amqp_pool_alloc(&pool, MemoryLayout<amqp_field_value_t>.stride * values.count) else {
            return amqp_array_t(num_entries: 0, entries: nil)
        }
        let entries = raw.bindMemory(to: amqp_field_value_t.self, capacity: values.count)
        for (index, value) in values.enumerated() {
            entries[index] = field(value)
        }
        return amqp_array_t(num_entries: Int32(values.count), entries: entries)
    }

    func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var result = amqp_basic_properties_t()
        var flags: UInt32 = 0
        func set(_ value: String?, _ flag: Int32, _ field: WritableKeyPath<amqp_basic_properties_t, amqp_bytes_t>) {
            guard let value else { return }
            result[keyPath: field] = bytes(value)
            flags |= UInt32(flag)
        }
        set(properties.contentType, Int32(WARREN_FLAG_CONTENT_TYPE), \.content_type)
        set(properties.contentEncoding, Int32(WARREN_FLAG_CONTENT_ENCODING), \.content_encoding)
        set(properties.correlationID, Int32(WARREN_FLAG_CORRELATION_ID), \.correlation_id)
        set(properties.replyTo, Int32(WARREN_FLAG_REPLY_TO), \.reply_to)
        set(properties.expiration, Int32(WARREN_FLAG_EXPIRATION), \.expiration)
        set(properties.messageID, Int32(WARREN_FLAG_MESSAGE_ID), \.message_id)
        set(properties.type, Int32(WARREN_FLAG_TYPE), \.type)
        set(properties.userID, Int32(WARREN_FLAG_USER_ID), \.user_id)
        set(properties.appID, Int32(WARREN_FLAG_APP_ID), \.app_id)
        if let headers = properties.headers {
            result.headers = table(headers)
            flags |= UInt32(WARREN_FLAG_HEADERS)
        }
        if let mode = properties.deliveryMode {
            result.delivery_mode = mode.rawValue
            flags |= UInt32(WARREN_FLAG_DELIVERY_MODE)
        }
        if let priority = properties.priority {
            result.priority = priority
            flags |= UInt32(WARREN_FLAG_PRIORITY)
        }
        if let timestamp = properties.timestamp {
            result.timestamp = timestamp.amqpTimestamp
            flags |= UInt32(WARREN_FLAG_TIMESTAMP)
        }
        result._flags = flags
        return result
    }
}

private func kind(_ kind: amqp_field_value_kind_t) -> UInt8 { UInt8(truncatingIfNeeded: kind.rawValue) }
