public import Foundation
public import Logging
public import WarrenAMQP
// Every user of the runtime speaks the wire contract: its names, headers, errors and checks.
@_exported public import WarrenContract

/// What Warren knows about a message beyond its body: the ids that tie a flow together, the
/// operation or event type, the deadline and the trace context.
///
/// Read tolerantly: a plain AMQP client may send only `type`, `reply_to`, `correlation_id` and a
/// JSON body; everything else gets a default (a new message id, no deadline, …).
public struct Envelope: Sendable {
    public var messageID: String
    public var correlationID: String
    public var causationID: String?
    /// The operation (`users.get`) or event type (`order.created`).
    public var type: String?
    public var deadline: Date?
    public var traceparent: String?
    public var replyTo: String?
    public var aggregateID: String?
    public var timestamp: Date?
    public var headers: AMQPTable

    public init(
        messageID: String = UUID().uuidString.lowercased(), correlationID: String? = nil, causationID: String? = nil,
        type: String? = nil, deadline: Date? = nil, traceparent: String? = nil, replyTo: String? = nil,
        aggregateID: String? = nil, timestamp: Date? = nil, headers: AMQPTable = [:]
    ) {
        self.messageID = messageID
        self.correlationID = correlationID ?? messageID
        self.causationID = causationID
        self.type = type
        self.deadline = deadline
        self.traceparent = traceparent
        self.replyTo = replyTo
        self.aggregateID = aggregateID
        self.timestamp = timestamp
        self.headers = headers
    }

    /// Reads what any AMQP client may have sent.
    public init(delivery: AMQPDelivery) {
        let properties = delivery.properties
        let headers = properties.headers ?? [:]
        let messageID = properties.messageID ?? UUID().uuidString.lowercased()
        self.init(
            messageID: messageID,
            // The flow's id; the AMQP correlation id may be one call's (see RPCClient).
            correlationID: headers[WireHeader.correlationID]?.stringValue ?? properties.correlationID,
            causationID: headers[WireHeader.causationID]?.stringValue,
            type: properties.type,
            deadline: Envelope.deadline(from: headers[WireHeader.deadline]),
            traceparent: headers[WireHeader.traceparent]?.stringValue,
            replyTo: properties.replyTo,
            aggregateID: headers[WireHeader.aggregateID]?.stringValue,
            timestamp: properties.timestamp,
            headers: headers)
    }

    /// The latest deadline there is: 9999-12-31T23:59:59.999Z in epoch milliseconds. Later ones
    /// (up to `1e300` or +infinity) mean "no hurry" and are read as this.
    static let latestDeadlineMilliseconds: Int64 = 253_402_300_799_999

    /// A deadline may come as an integer of any width, as a double (Java and Go clients send
    /// floats) or, from clients whose headers are all strings, as digits. Never traps: before
    /// 1970 (negative, -infinity) is read as 1970, i.e. expired; past year 9999 (+infinity)
    /// as the end of 9999; NaN, other text and other types as no deadline.
    static func deadline(from value: AMQPFieldValue?) -> Date? {
        guard let milliseconds = value?.integer(clampedTo: 0...latestDeadlineMilliseconds) else { return nil }
        return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// Epoch milliseconds for the `x-deadline` header, clamped like `deadline(from:)`, so a
    /// deadline set by any code (or read off the wire) is written without trapping.
    static func milliseconds(_ deadline: Date) -> Int64 {
        let milliseconds = (deadline.timeIntervalSince1970 * 1000).rounded()
        return AMQPFieldValue.double(milliseconds).integer(clampedTo: 0...latestDeadlineMilliseconds) ?? 0
    }

    /// The AMQP properties that carry this envelope, with a JSON body.
    public func properties(persistent: Bool = false) -> AMQPProperties {
        var headers = self.headers
        if let causationID { headers[WireHeader.causationID] = .string(causationID) }
        if let deadline { headers[WireHeader.deadline] = .int(Envelope.milliseconds(deadline)) }
        if let traceparent { headers[WireHeader.traceparent] = .string(traceparent) }
        if let aggregateID { headers[WireHeader.aggregateID] = .string(aggregateID) }
        return AMQPProperties(
            contentType: "application/json", headers: headers.isEmpty ? nil : headers,
            deliveryMode: persistent ? .persistent : nil, correlationID: correlationID, replyTo: replyTo,
            messageID: messageID, timestamp: timestamp ?? Date(), type: type)
    }

    /// Why this envelope cannot be kept (and, with `passedOn`, passed on) exactly, if it
    /// cannot, naming the field. Its ids and type are stored as text (processed event ids, the
    /// command inbox, the outbox, the event store) through GRDB, which hands SQLite C strings,
    /// so a NUL would cut `id\0x` to `id` and make two messages one. And the flow's correlation
    /// id, which may come from any client in `x-correlation-id`, travels on in the AMQP
    /// `correlation_id` of every event the message causes: over 255 bytes AMQP cannot carry it,
    /// and such an event could never be published. Such a message is refused (`invalid`), never
    /// stored cut or left stuck. A store that causes nothing (the event store) passes
    /// `passedOn: false` and keeps a long correlation id as it came.
    public func invalidField(passedOn: Bool = true) -> ServiceError? {
        let fields: [(String, String?)] = [
            ("message_id", messageID), ("the correlation id", correlationID), (WireHeader.causationID, causationID),
            ("type", type), (WireHeader.aggregateID, aggregateID),
        ]
        for case (let name, let value?) in fields where value.utf8.contains(0) {
            return .invalid("\(name) contains NUL (\\0), which cannot be stored exactly")
        }
        if passedOn, correlationID.utf8.count > 255 {
            return .invalid(
                "the correlation id (\(WireHeader.correlationID) or correlation_id) is \(correlationID.utf8.count) bytes; "
                    + "it travels on in the AMQP correlation_id of the events it causes, which holds at most 255")
        }
        return nil
    }

    /// `logger` with the ids of this message in its metadata, for every line written while
    /// handling it.
    public func logger(_ logger: Logger, type: String) -> Logger {
        var logger = logger
        logger[metadataKey: "correlation_id"] = "\(correlationID)"
        logger[metadataKey: "message_id"] = "\(messageID)"
        logger[metadataKey: "type"] = "\(type)"
        return logger
    }

    /// The envelope of a message caused by this one: same correlation, this one as cause.
    public func caused(type: String, messageID: String = UUID().uuidString.lowercased()) -> Envelope {
        Envelope(messageID: messageID, correlationID: correlationID, causationID: self.messageID, type: type, deadline: deadline, traceparent: traceparent)
    }
}

extension AMQPProperties {
    /// The longest `x-error` kept, in UTF-8 bytes: a handler's error may quote a whole body,
    /// and the copy set aside must still fit in one frame beside the original headers.
    public static let maxErrorLength = 1024

    /// The properties of a message set aside (retry or dead-letter queue), with the headers that
    /// say why (schemas/warren/dead-letter-headers.schema.json). `error` is cut to
    /// `maxErrorLength` bytes.
    public func deadLettered(error: String, originalRoutingKey: String, attempts: Int? = nil) -> AMQPProperties {
        var properties = self
        var headers = properties.headers ?? [:]
        headers[WireHeader.error] = .string(Self.shortened(error))
        headers[WireHeader.originalRoutingKey] = .string(originalRoutingKey)
        if let attempts { headers[WireHeader.attempts] = .int(Int64(clamping: attempts)) }
        properties.headers = headers
        return properties
    }

    static func shortened(_ error: String) -> String {
        guard error.utf8.count > maxErrorLength else { return error }
        var cut = ""
        var length = 0
        for character in error {
            length += character.utf8.count
            guard length <= maxErrorLength - 3 else { break }  // 3: the ellipsis
            cut.append(character)
        }
        return cut + "…"
    }
}
