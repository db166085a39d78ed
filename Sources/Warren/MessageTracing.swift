public import Instrumentation
import Synchronization
public import Tracing
public import WarrenAMQP
import WarrenContract

/// W3C trace context (`traceparent`, `tracestate`) in AMQP header tables, through whatever
/// instrument `InstrumentationSystem` was bootstrapped with. With none (the default), injecting
/// adds nothing and extracting finds nothing: a process without a tracer does no tracing work.
public enum MessageTracing {
    /// The W3C header names (https://www.w3.org/TR/trace-context/).
    public static let traceparent = "traceparent"
    public static let tracestate = "tracestate"

    /// The longest header value handed to the instrument: a `traceparent` is 55 characters and
    /// a `tracestate` at most 32 members of 256 (W3C's limit for propagation is 512). A longer
    /// (hostile) value is ignored as if absent, not parsed.
    public static let maxHeaderLength = 512

    private static let enabled = Atomic<Bool>(false)

    /// Whether Warren makes spans: set by `Observability.bootstrapTracing` (or by `enable()`
    /// after bootstrapping `InstrumentationSystem` by hand). Off, the message paths skip every
    /// span, header read and task-local: not even the no-op tracer is asked.
    public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// Turns span making on; call once, after `InstrumentationSystem.bootstrap`.
    public static func enable() { enabled.store(true, ordering: .relaxed) }

    /// A span from the bootstrapped tracer, or nil (and nothing evaluated) when tracing is off.
    public static func startSpan(
        _ name: @autoclosure () -> String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind
    ) -> (any Span)? {
        guard isEnabled else { return nil }
        return Tracing.startSpan(name(), context: context(), ofKind: kind)
    }

    /// Writes `context`'s trace headers into `headers` (over any there).
    public static func inject(_ context: ServiceContext, into headers: inout AMQPTable) {
        InstrumentationSystem.instrument.inject(context, into: &headers, using: AMQPHeadersInjector())
    }

    /// The context `headers` carry: the remote parent of the span that handles the message.
    /// Garbage, an oversized value, a wrong version: no parent (the instrument ignores what it
    /// cannot parse), never a failure.
    public static func extract(from headers: AMQPTable?, into context: ServiceContext = .topLevel) -> ServiceContext {
        var context = context
        guard let headers, headers[traceparent] != nil else { return context }
        InstrumentationSystem.instrument.extract(headers, into: &context, using: AMQPHeadersExtractor())
        return context
    }

    /// The context of a span handling a message: the one in `traceparent` (and `tracestate`),
    /// else the caller's own. Text from a store or from a client, read like a header.
    public static func context(traceparent: String?, tracestate: String? = nil) -> ServiceContext {
        guard let traceparent else { return ServiceContext.current ?? .topLevel }
        var headers: AMQPTable = [Self.traceparent: .string(traceparent)]
        if let tracestate { headers[Self.tracestate] = .string(tracestate) }
        return extract(from: headers)
    }

    /// `context`'s `traceparent`, or nil when no tracer is bootstrapped or it has no span.
    public static func traceparent(of context: ServiceContext) -> String? {
        var headers: AMQPTable = [:]
        inject(context, into: &headers)
        return headers[traceparent]?.stringValue
    }
}

/// Writes trace headers as AMQP long strings.
public struct AMQPHeadersInjector: Injector {
    public init() {}

    public func inject(_ value: String, forKey key: String, into carrier: inout AMQPTable) {
        carrier[key] = .string(value)
    }
}

/// Reads trace headers from an AMQP table: only string values of at most
/// `MessageTracing.maxHeaderLength` bytes; anything else is absent.
public struct AMQPHeadersExtractor: Extractor {
    public init() {}

    public func extract(key: String, from carrier: AMQPTable) -> String? {
        guard let value = carrier[key]?.stringValue, value.utf8.count <= MessageTracing.maxHeaderLength else { return nil }
        return value
    }
}

/// Attribute names of OpenTelemetry's semantic conventions (messaging 1.x, HTTP) that Warren's
/// spans set; one place so that every span spells them alike.
public enum SpanAttributeName {
    public static let messagingSystem = "messaging.system"
    public static let messagingDestinationName = "messaging.destination.name"
    public static let messagingOperationType = "messaging.operation.type"
    public static let messagingOperationName = "messaging.operation.name"
    public static let messagingMessageID = "messaging.message.id"
    public static let messagingConversationID = "messaging.message.conversation_id"
    public static let messagingRoutingKey = "messaging.rabbitmq.destination.routing_key"
    public static let httpRequestMethod = "http.request.method"
    public static let httpRoute = "http.route"
    public static let httpResponseStatusCode = "http.response.status_code"
    public static let errorType = "error.type"
}

extension Span {
    /// Sets the messaging attributes of a span about one message: RabbitMQ, where it goes,
    /// what is done with it (`send`, `receive`, `process`, `create`, `publish` → type), its ids.
    public func setMessagingAttributes(
        operation: String, operationType: String, destination: String, routingKey: String?, envelope: Envelope
    ) {
        guard isRecording else { return }
        attributes[SpanAttributeName.messagingSystem] = "rabbitmq"
        attributes[SpanAttributeName.messagingOperationName] = operation
        attributes[SpanAttributeName.messagingOperationType] = operationType
        attributes[SpanAttributeName.messagingDestinationName] = destination
        if let routingKey { attributes[SpanAttributeName.messagingRoutingKey] = routingKey }
        attributes[SpanAttributeName.messagingMessageID] = envelope.messageID
        attributes[SpanAttributeName.messagingConversationID] = envelope.correlationID
    }
}

extension Span {
    /// Marks the span failed with the error's code as `error.type`.
    public func recordServiceError(_ error: ServiceError) {
        guard isRecording else { return }
        attributes[SpanAttributeName.errorType] = error.code.rawValue
        setStatus(.init(code: .error, message: error.message))
    }
}
