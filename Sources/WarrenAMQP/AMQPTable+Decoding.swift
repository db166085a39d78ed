import CRabbitMQ
import Foundation

/// What decoding could not keep exactly as it came, one sentence each (at most
/// `DecodingLosses.limit`): a reader that must keep a message as it came (the event store)
/// refuses it instead of keeping it changed.
struct DecodingLosses {
    static let limit = 8
    var notes: [String] = []

    mutating func note(_ note: @autoclosure () -> String) {
        if notes.count < Self.limit { notes.append(note()) }
    }
}

extension AMQPProperties {
    /// Notes in `decodingLosses` that the routing key that came with these properties (decoded
    /// by `String.decoding(amqpBytes:)`) was not UTF-8.
    mutating func noteRoutingKey(exact: Bool) {
        guard !exact else { return }
        var losses = DecodingLosses(notes: decodingLosses)
        losses.note("the routing key is not valid UTF-8")
        decodingLosses = losses.notes
    }
}

/// Decodes a field table librabbitmq has parsed. Tables and arrays nested deeper than
/// `WireLimits.maxNesting` become `.void`: the recursion runs on the I/O thread, whose stack a
/// 128 KiB frame of nested arrays (5 bytes a level) would otherwise exhaust. Every change from
/// what came (such a cut, an unsigned integer beyond `Int64.max`, text that is not UTF-8, a
/// name given twice) is noted in `losses`, with the header's path.
func decodeTable(_ table: amqp_table_t, depth: Int = 0, path: String = "", losses: inout DecodingLosses) -> AMQPTable {
    var result: AMQPTable = [:]
    guard let entries = table.entries, table.num_entries > 0 else { return result }
    for index in 0..<Int(table.num_entries) {
        let (key, exact) = String.decoding(amqpBytes: entries[index].key)
        let keyPath = path.isEmpty ? key : "\(path).\(key)"
        if !exact { losses.note("the header name \(keyPath.debugDescription) is not valid UTF-8") }
        let value = decodeField(entries[index].value, depth: depth, path: keyPath, losses: &losses)
        if result.updateValue(value, forKey: key) != nil { losses.note("the header \(keyPath.debugDescription) appears twice") }
    }
    return result
}

/// `decodeTable(_:depth:path:losses:)` for readers that take what decoding gives.
func decodeTable(_ table: amqp_table_t) -> AMQPTable {
    var losses = DecodingLosses()
    return decodeTable(table, losses: &losses)
}

/// One field value. Every integer kind becomes `.int`: an unsigned 64-bit one above
/// `Int64.max` saturates there instead of wrapping to a negative number (a loss, noted). A
/// timestamp is any `Date` (a u64 of seconds always converts to a finite `Double`); readers
/// bound it themselves.
func decodeField(_ field: amqp_field_value_t, depth: Int = 0, path: String, losses: inout DecodingLosses) -> AMQPFieldValue {
    switch UInt32(field.kind) {
    case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
    case AMQP_FIELD_KIND_I8.rawValue: return .int(Int64(field.value.i8))
    case AMQP_FIELD_KIND_U8.rawValue: return .int(Int64(field.value.u8))
    case AMQP_FIELD_KIND_I16.rawValue: return .int(Int64(field.value.i16))
    case AMQP_FIELD_KIND_U16.rawValue: return .int(Int64(field.value.u16))
    case AMQP_FIELD_KIND_I32.rawValue: return .int(Int64(field.value.i32))
    case AMQP_FIELD_KIND_U32.rawValue: return .int(Int64(field.value.u32))
    case AMQP_FIELD_KIND_I64.rawValue: return .int(field.value.i64)
    case AMQP_FIELD_KIND_U64.rawValue:
        if field.value.u64 > UInt64(Int64.max) { losses.note("the header \(path.debugDescription) is an unsigned integer above \(Int64.max)") }
        return .int(Int64(clamping: field.value.u64))
    case AMQP_FIELD_KIND_F32.rawValue: return .double(Double(field.value.f32))
    case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
    case AMQP_FIELD_KIND_UTF8.rawValue:
        let (text, exact) = String.decoding(amqpBytes: field.value.bytes)
        if !exact { losses.note("the header \(path.debugDescription) is not valid UTF-8") }
        return .string(text)
    case AMQP_FIELD_KIND_BYTES.rawValue: return .bytes(Data(amqpBytes: field.value.bytes))
    case AMQP_FIELD_KIND_TIMESTAMP.rawValue:
        return .timestamp(Date(timeIntervalSince1970: TimeInterval(field.value.u64)))
    case AMQP_FIELD_KIND_DECIMAL.rawValue:
        return .decimal(scale: field.value.decimal.decimals, value: field.value.decimal.value)
    case AMQP_FIELD_KIND_TABLE.rawValue:
        guard depth < WireLimits.maxNesting else {
            losses.note("the header \(path.debugDescription) is nested deeper than \(WireLimits.maxNesting) levels")
            return .void
        }
        return .table(decodeTable(field.value.table, depth: depth + 1, path: path, losses: &losses))
    case AMQP_FIELD_KIND_ARRAY.rawValue:
        guard depth < WireLimits.maxNesting else {
            losses.note("the header \(path.debugDescription) is nested deeper than \(WireLimits.maxNesting) levels")
            return .void
        }
        let array = field.value.array
        guard let entries = array.entries, array.num_entries > 0 else { return .array([]) }
        return .array((0..<Int(array.num_entries)).map { decodeField(entries[$0], depth: depth + 1, path: "\(path)[\($0)]", losses: &losses) })
    case AMQP_FIELD_KIND_VOID.rawValue: return .void
    default:
        losses.note("the header \(path.debugDescription) has a field type Warren does not read")
        return .void
    }
}

/// Decodes a field table in its wire form (a 4-byte length, then the entries) the way a
/// delivery's headers are decoded; nil when librabbitmq refuses the bytes. For tests that feed
/// the decoder hostile bytes without a broker.
func decodeTable(wire: Data) -> AMQPTable? {
    decodeTableNotingLosses(wire: wire)?.table
}

/// `decodeTable(wire:)` with what decoding could not keep exactly (`DecodingLosses`).
func decodeTableNotingLosses(wire: Data) -> (table: AMQPTable, losses: [String])? {
    var pool = amqp_pool_t()
    init_amqp_pool(&pool, 4096)
    defer { empty_amqp_pool(&pool) }
    var wire = wire
    return wire.withUnsafeMutableBytes { buffer -> (AMQPTable, [String])? in
        guard let base = buffer.baseAddress else { return nil }
        var table = amqp_table_t()
        var offset = 0
        guard amqp_decode_table(amqp_bytes_t(len: buffer.count, bytes: base), &pool, &table, &offset) == 0 else {  // AMQP_STATUS_OK
            return nil
        }
        var losses = DecodingLosses()
        let decoded = decodeTable(table, losses: &losses)
        return (decoded, losses.notes)
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
