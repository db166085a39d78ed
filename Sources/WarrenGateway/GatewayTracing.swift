public import NIOHTTP1
import Instrumentation
public import Tracing
import Warren

/// The gateway's server span of one HTTP request, apart from the HTTP layer so that any layer
/// (the SwiftNIO pipeline's GatewayResponder.respond) calls the same two functions:
/// `startServerSpan` when the request's head is in, `endServerSpan` with the matched route and
/// the status. Run the request's work under `ServiceContext.withValue(span.context)` so that
/// its RPC calls are children of this span.
///
/// A client's W3C `traceparent` (and `tracestate`) makes the span its child: the client's trace
/// goes on through the services. A malformed or oversized header is ignored (a new trace), never
/// an error. With no tracer bootstrapped the span is the no-op one and nothing is read.
public enum GatewayTracing {
    /// Starts the server span; its name is the method until the route is known. nil, at no
    /// cost, when tracing is off (`MessageTracing.isEnabled`).
    public static func startServerSpan(method: String, headers: HTTPHeaders) -> (any Span)? {
        guard MessageTracing.isEnabled else { return nil }
        var context = ServiceContext.topLevel
        if headers.contains(name: "traceparent") {
            InstrumentationSystem.instrument.extract(headers, into: &context, using: HTTPHeadersExtractor())
        }
        let span = startSpan(method, context: context, ofKind: .server)
        if span.isRecording { span.attributes[SpanAttributeName.httpRequestMethod] = method }
        return span
    }

    /// Names the span `<method> <route>` (OpenTelemetry's HTTP convention: the route template,
    /// `/orders/{orderId}`, never the raw path), records the status and ends it. A 5xx marks
    /// the span failed; a 4xx is the client's error, not the server's.
    public static func endServerSpan(_ span: (any Span)?, method: String, route: String?, status: Int) {
        guard let span else { return }
        if span.isRecording {
            if let route {
                span.operationName = "\(method) \(route)"
                span.attributes[SpanAttributeName.httpRoute] = route
            }
            span.attributes[SpanAttributeName.httpResponseStatusCode] = status
            if status >= 500 {
                span.attributes[SpanAttributeName.errorType] = "\(status)"
                span.setStatus(.init(code: .error))
            }
        }
        span.end()
    }
}

/// Reads trace headers from HTTP headers: one value of at most `MessageTracing.maxHeaderLength`
/// bytes, else absent (a header sent twice is ambiguous, so it starts a new trace).
struct HTTPHeadersExtractor: Extractor {
    func extract(key: String, from carrier: HTTPHeaders) -> String? {
        let values = carrier[key]
        guard values.count == 1, let value = values.first, value.utf8.count <= MessageTracing.maxHeaderLength else { return nil }
        return value
    }
}
