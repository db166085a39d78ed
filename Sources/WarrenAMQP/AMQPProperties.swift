public import Foundation

/// The basic properties of a message. Every field is optional: only those set go on the wire.
public struct AMQPProperties: Sendable, Hashable {
    /// Whether the broker writes the message to disk (in a durable queue).
    public enum DeliveryMode: UInt8, Sendable {
        case transient = 1
        case persistent = 2
    }

    public var contentType: String?
    public var contentEncoding: String?
    public var headers: AMQPTable?
    public var deliveryMode: DeliveryMode?
    public var priority: UInt8?
    public var correlationID: String?
    public var replyTo: String?
    /// Per-message TTL in milliseconds, as a decimal string (the AMQP spelling).
    public var expiration: String?
    public var messageID: String?
    /// Seconds resolution on the wire.
    public var timestamp: Date?
    public var type: String?
    public var userID: String?
    public var appID: String?
    /// What decoding these properties off the wire could not keep exactly as they came, one
    /// sentence each, naming the property or header: a header nested deeper than 32 levels
    /// (cut to `.void`), an unsigned integer above `Int64.max` (saturated), text that is not
    /// UTF-8 (repaired to U+FFFD), a header name given twice (the last kept), a field type or
    /// delivery mode AMQP does not define. Empty when the properties are exactly what was sent,
    /// and always for properties made in code; never sent. A reader that keeps messages as they
    /// came (the event store) refuses those with losses instead of keeping them changed.
    public var decodingLosses: [String] = []

    public init(
        contentType: String? = nil,
        contentEncoding: String? = nil,
        headers: AMQPTable? = nil,
        deliveryMode: DeliveryMode? = nil,
        priority: UInt8? = nil,
        correlationID: String? = nil,
        replyTo: String? = nil,
        expiration: String? = nil,
        messageID: String? = nil,
        timestamp: Date? = nil,
        type: String? = nil,
        userID: String? = nil,
        appID: String? = nil
    ) {
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.priority = priority
        self.correlationID = correlationID
        self.replyTo = replyTo
        self.expiration = expiration
        self.messageID = messageID
        self.timestamp = timestamp
        self.type = type
        self.userID = userID
        self.appID = appID
    }
}
