/// The AMQP header names of Warren's wire contract (schemas/warren/*-headers.schema.json,
/// schemas/asyncapi.yaml). Every reader and writer of a header spells it through here.
public enum WireHeader {
    /// Epoch milliseconds (an integer; doubles and digits are read too) after which nobody
    /// waits for the answer.
    public static let deadline = "x-deadline"
    /// `ok` or `error` on replies; an `error` reply's body is an `ErrorReply`.
    public static let status = "x-status"
    /// The message id of the message that caused this one.
    public static let causationID = "x-causation-id"
    /// The flow's id, kept across every message the flow causes (the AMQP `correlation_id`
    /// may be one call's).
    public static let correlationID = "x-correlation-id"
    /// The entity an event is about (an order id, a user id).
    public static let aggregateID = "x-aggregate-id"
    /// W3C trace context.
    public static let traceparent = "traceparent"
    /// Why a message was set aside (retry or dead-letter queue), at most 1024 UTF-8 bytes.
    public static let error = "x-error"
    /// How many times an event was tried before it was set aside.
    public static let attempts = "x-attempts"
    /// The routing key a dead-lettered event was first published with.
    public static let originalRoutingKey = "x-original-routing-key"
    /// Set on events republished by `warren replay`.
    public static let replayed = "x-replayed"
    /// On a replayed event given a new correlation id: the one it was stored with.
    public static let originalCorrelationID = "x-original-correlation-id"
    /// The headers a dead-letter copy had to leave out, with their sizes
    /// (`x-padding (130846 bytes)`), so that the copy fits in a frame.
    public static let droppedHeaders = "x-dropped-headers"
}
