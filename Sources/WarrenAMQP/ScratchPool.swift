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

extension Date {
    /// Whole seconds since 1970 as AMQP's unsigned 64-bit timestamp: a date before 1970 (or NaN)
    /// is 0 and one past the field's range is its maximum, because a decoded message may carry
    /// any value and forwarding it (a retry, a dead letter) must not trap.
    var amqpTimestamp: UInt64 {
        let seconds = timeIntervalSince1970.rounded(.down)
        guard seconds > 0 else { return 0 }  // also NaN
        guard seconds < 18_446_744_073_709_551_616.0 else { return .max }  // 2^64
        return UInt64(seconds)
    }
}

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

/// Decodes a field table librabbitmq has parsed. Tables and arrays nested deeper than
/// `WireLimits.maxNesting` become `.void`: the recursion runs on the I/O thread, whose stack a
/// 128 KiB frame of nested arrays (5 bytes a level) would otherwise exhaust.
func decodeTable(_ table: amqp_table_t, depth: Int = 0) -> AMQPTable {
    var result: AMQPTable = [:]
    guard let entries = table.entries, table.num_entries > 0 else { return result }
    for index in 0..<Int(table.num_entries) {
        result[String(amqpBytes: entries[index].key)] = decodeField(entries[index].value, depth: depth)
    }
    return result
}

/// One field value. Every integer kind becomes `.int`: an unsigned 64-bit one above
/// `Int64.max` saturates there instead of wrapping to a negative number. A timestamp is any
/// `Date` (a u64 of seconds always converts to a finite `Double`); readers bound it themselves.
func decodeField(_ field: amqp_field_value_t, depth: Int = 0) -> AMQPFieldValue {
    switch UInt32(field.kind) {
    case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
    case AMQP_FIELD_KIND_I8.rawValue: return .int(Int64(field.value.i8))
    case AMQP_FIELD_KIND_U8.rawValue: return .int(Int64(field.value.u8))
    case AMQP_FIELD_KIND_I16.rawValue: return .int(Int64(field.value.i16))
    case AMQP_FIELD_KIND_U16.rawValue: return .int(Int64(field.value.u16))
    case AMQP_FIELD_KIND_I32.rawValue: return .int(Int64(field.value.i32))
    case AMQP_FIELD_KIND_U32.rawValue: return .int(Int64(field.value.u32))
    case AMQP_FIELD_KIND_I64.rawValue: return .int(field.value.i64)
    case AMQP_FIELD_KIND_U64.rawValue: return .int(Int64(clamping: field.value.u64))
    case AMQP_FIELD_KIND_F32.rawValue: return .double(Double(field.value.f32))
    case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
    case AMQP_FIELD_KIND_UTF8.rawValue: return .string(String(amqpBytes: field.value.bytes))
    case AMQP_FIELD_KIND_BYTES.rawValue: return .bytes(Data(amqpBytes: field.value.bytes))
    case AMQP_FIELD_KIND_TIMESTAMP.rawValue:
        return .timestamp(Date(timeIntervalSince1970: TimeInterval(field.value.u64)))
    case AMQP_FIELD_KIND_DECIMAL.rawValue:
        return .decimal(scale: field.value.decimal.decimals, value: field.value.decimal.value)
    case AMQP_FIELD_KIND_TABLE.rawValue:
        guard depth < WireLimits.maxNesting else { return .void }
        return .table(decodeTable(field.value.table, depth: depth + 1))
    case AMQP_FIELD_KIND_ARRAY.rawValue:
        guard depth < WireLimits.maxNesting else { return .void }
        let array = field.value.array
        guard let entries = array.entries, array.num_entries > 0 else { return .array([]) }
        return .array((0..<Int(array.num_entries)).map { decodeField(entries[$0], depth: depth + 1) })
    default: return .void
    }
}

/// Decodes a field table in its wire form (a 4-byte length, then the entries) the way a
/// delivery's headers are decoded; nil when librabbitmq refuses the bytes. For tests that feed
/// the decoder hostile bytes without a broker.
func decodeTable(wire: Data) -> AMQPTable? {
    var pool = amqp_pool_t()
    init_amqp_pool(&pool, 4096)
    defer { empty_amqp_pool(&pool) }
    var wire = wire
    return wire.withUnsafeMutableBytes { buffer -> AMQPTable? in
        guard let base = buffer.baseAddress else { return nil }
        var table = amqp_table_t()
        var offset = 0
        guard amqp_decode_table(amqp_bytes_t(len: buffer.count, bytes: base), &pool, &table, &offset) == 0 else {  // AMQP_STATUS_OK
            return nil
        }
        return decodeTable(table)
    }
}

/// Encodes a table as Warren puts it on the wire (ScratchPool), then decodes those bytes: the
/// round trip a header makes from one Warren process to another. nil if it does not fit 1 MiB.
func roundTrip(_ table: AMQPTable) -> AMQPTable? {
    let scratch = ScratchPool()
    var encoded = scratch.table(table)
    var buffer = Data(count: 1 << 20)
    return buffer.withUnsafeMutableBytes { raw -> AMQPTable? in
        guard let base = raw.baseAddress else { return nil }
        var offset = 0
        guard amqp_encode_table(amqp_bytes_t(len: raw.count, bytes: base), &encoded, &offset) == 0 else { return nil }
        return decodeTable(wire: Data(bytes: base, count: offset))
    }
}

func decodeProperties(_ raw: amqp_basic_properties_t) -> AMQPProperties {
    let flags = raw._flags
    func string(_ flag: Int32, _ bytes: amqp_bytes_t) -> String? {
        flags & UInt32(flag) != 0 ? String(amqpBytes: bytes) : nil
    }
    var properties = AMQPProperties()
    properties.contentType = string(Int32(WARREN_FLAG_CONTENT_TYPE), raw.content_type)
    properties.contentEncoding = string(Int32(WARREN_FLAG_CONTENT_ENCODING), raw.content_encoding)
    properties.correlationID = string(Int32(WARREN_FLAG_CORRELATION_ID), raw.correlation_id)
    properties.replyTo = string(Int32(WARREN_FLAG_REPLY_TO), raw.reply_to)
    properties.expiration = string(Int32(WARREN_FLAG_EXPIRATION), raw.expiration)
    properties.messageID = string(Int32(WARREN_FLAG_MESSAGE_ID), raw.message_id)
    properties.type = string(Int32(WARREN_FLAG_TYPE), raw.type)
    properties.userID = string(Int32(WARREN_FLAG_USER_ID), raw.user_id)
    properties.appID = string(Int32(WARREN_FLAG_APP_ID), raw.app_id)
    if flags & UInt32(WARREN_FLAG_HEADERS) != 0 { properties.headers = decodeTable(raw.headers) }
    if flags & UInt32(WARREN_FLAG_DELIVERY_MODE) != 0 {
        properties.deliveryMode = AMQPProperties.DeliveryMode(rawValue: raw.delivery_mode)
    }
    if flags & UInt32(WARREN_FLAG_PRIORITY) != 0 { properties.priority = raw.priority }
    if flags & UInt32(WARREN_FLAG_TIMESTAMP) != 0 {
        properties.timestamp = Date(timeIntervalSince1970: TimeInterval(raw.timestamp))
    }
    return properties
}
