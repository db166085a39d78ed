import CRabbitMQ
import Foundation

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
