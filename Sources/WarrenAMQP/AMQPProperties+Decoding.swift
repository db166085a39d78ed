import CRabbitMQ
import Foundation

/// Copies a content header's properties out of librabbitmq's memory.
func decodeProperties(_ raw: amqp_basic_properties_t) -> AMQPProperties {
    let flags = raw._flags
    var losses = DecodingLosses()
    func string(_ flag: Int32, _ bytes: amqp_bytes_t, _ name: StaticString) -> String? {
        guard flags & UInt32(flag) != 0 else { return nil }
        let (text, exact) = String.decoding(amqpBytes: bytes)
        if !exact { losses.note("the property \(name) is not valid UTF-8") }
        return text
    }
    var properties = AMQPProperties()
    properties.contentType = string(Int32(WARREN_FLAG_CONTENT_TYPE), raw.content_type, "content_type")
    properties.contentEncoding = string(Int32(WARREN_FLAG_CONTENT_ENCODING), raw.content_encoding, "content_encoding")
    properties.correlationID = string(Int32(WARREN_FLAG_CORRELATION_ID), raw.correlation_id, "correlation_id")
    properties.replyTo = string(Int32(WARREN_FLAG_REPLY_TO), raw.reply_to, "reply_to")
    properties.expiration = string(Int32(WARREN_FLAG_EXPIRATION), raw.expiration, "expiration")
    properties.messageID = string(Int32(WARREN_FLAG_MESSAGE_ID), raw.message_id, "message_id")
    properties.type = string(Int32(WARREN_FLAG_TYPE), raw.type, "type")
    properties.userID = string(Int32(WARREN_FLAG_USER_ID), raw.user_id, "user_id")
    properties.appID = string(Int32(WARREN_FLAG_APP_ID), raw.app_id, "app_id")
    if flags & UInt32(WARREN_FLAG_HEADERS) != 0 { properties.headers = decodeTable(raw.headers, losses: &losses) }
    if flags & UInt32(WARREN_FLAG_DELIVERY_MODE) != 0 {
        properties.deliveryMode = AMQPProperties.DeliveryMode(rawValue: raw.delivery_mode)
        if properties.deliveryMode == nil { losses.note("the property delivery_mode is \(raw.delivery_mode), neither 1 nor 2") }
    }
    if flags & UInt32(WARREN_FLAG_PRIORITY) != 0 { properties.priority = raw.priority }
    if flags & UInt32(WARREN_FLAG_TIMESTAMP) != 0 {
        properties.timestamp = Date(timeIntervalSince1970: TimeInterval(raw.timestamp))
    }
    properties.decodingLosses = losses.notes
    return properties
}
