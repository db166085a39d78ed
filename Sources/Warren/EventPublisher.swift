public import Foundation
import Tracing
public import WarrenAMQP
import WarrenContract

/// Publishes domain events to the durable topic exchange `warren.events`, routing key = event
/// type, persistent, with publisher confirms: `publish` returns once the broker has the event.
public final class EventPublisher: Sendable {
    public static let exchange = QueueName.eventExchange

    private let channel: AMQPChannel
    private let appID: String?

    private init(channel: AMQPChannel, appID: String?) {
        self.channel = channel
        self.appID = appID
    }

    /// Opens a confirm channel and declares the exchange (idempotent).
    public static func start(connection: AMQPConnection, appID: String? = nil) async throws -> EventPublisher {
        let channel = try await connection.openChannel()
        try await channel.declareExchange(exchange, type: "topic", durable: true)
        try await channel.enableConfirms()
        return EventPublisher(channel: channel, appID: appID)
    }

    /// Publishes an event whose JSON body is already encoded (the outbox relay, replays).
    /// `envelope.messageID` is the event id; `envelope.type` the event type and routing key.
    /// The reason when `error`, thrown by `publish`, means the event can never be published as
    /// it is (AMQP cannot carry one of its properties or headers) rather than a broker or
    /// connection failure worth retrying; nil for those.
    public static func permanentFailure(_ error: any Error) -> String? {
        if case .invalidArgument(let reason)? = error as? AMQPError { return reason }
        return nil
    }

    public func publish(_ body: Data, envelope: Envelope, routingKey: String? = nil, extraHeaders: AMQPTable = [:]) async throws {
        guard let type = envelope.type else { throw ServiceError.invalid("an event needs a type") }
        var envelope = envelope
        envelope.deadline = nil  // events are facts: they do not expire
        envelope.headers[WireHeader.correlationID] = .string(envelope.correlationID)
        for (key, value) in extraHeaders { envelope.headers[key] = value }
        // The producer span is a child of the span that caused the event: the one in the
        // envelope (an outbox row's stored context, a handler's span) or else the caller's.
        let span = MessageTracing.startSpan(
            "publish \(type)",
            context: MessageTracing.context(traceparent: envelope.traceparent, tracestate: envelope.headers[MessageTracing.tracestate]?.stringValue),
            ofKind: .producer)
        defer { span?.end() }
        span?.setMessagingAttributes(
            operation: "publish", operationType: "send", destination: Self.exchange, routingKey: routingKey ?? type, envelope: envelope)
        if let span, let traceparent = MessageTracing.traceparent(of: span.context) {
            envelope.traceparent = traceparent
            MessageTracing.inject(span.context, into: &envelope.headers)
        }
        var properties = envelope.properties(persistent: true)
        properties.appID = appID
        do {
            try await channel.publish(body, exchange: Self.exchange, routingKey: routingKey ?? type, properties: properties)
        } catch {
            span?.recordError(error)
            span?.setStatus(.init(code: .error))
            throw error
        }
    }

    /// Publishes `payload` as event `type` about `aggregateID`, caused by `cause` (same
    /// correlation id, cause's message id as causation id) when given.
    @discardableResult
    public func publish<Payload: Encodable & Sendable>(
        _ type: String, _ payload: Payload, aggregateID: String? = nil, causedBy cause: Envelope? = nil,
        eventID: String = UUID().uuidString.lowercased()
    ) async throws -> Envelope {
        var envelope = cause?.caused(type: type, messageID: eventID) ?? Envelope(messageID: eventID, type: type)
        envelope.aggregateID = aggregateID
        try await publish(try WireJSON.encode(payload), envelope: envelope)
        return envelope
    }
}
