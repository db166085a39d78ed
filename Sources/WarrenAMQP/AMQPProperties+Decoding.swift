import CRabbitMQ
import Foundation

/// Copies a content header's properties out of librabbitmq's memory.
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
