import Foundation
import Logging
import Synchronization
import Testing
import Tracing
@testable import Warren
import WarrenAMQP

@Suite("Observability: log lines, trace headers, process metrics, flows")
struct ObservabilityUnitTests {
    private func line(_ message: Logger.Message, metadata: Logger.Metadata = [:], provided: Logger.Metadata? = nil) throws -> (text: String, object: [String: Any]) {
        let event = LogEvent(level: .info, message: message, metadata: metadata, source: "test", file: #fileID, function: #function, line: #line)
        let data = try #require(
            JSONLogHandler.line(
                event: event, label: "users", metadata: ["service": "users"], provided: provided, at: Date(timeIntervalSince1970: 1_795_944_893.5415)))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (String(decoding: data, as: UTF8.self), object)
    }

    @Test("a JSON log line: RFC 3339 time in UTC with milliseconds, numbers as numbers, one line, trace ids from the provider")
    func jsonLogLine() throws {
        let (text, object) = try line(
            "first\nsecond \u{1B}[31m",
            metadata: [
                "attempt": "3", "ratio": "0.25", "negative": "-12", "id": "007", "exponent": "1e3", "big": "123456789012345678901234567890",
                "count": .stringConvertible(42), "nested": ["a": "1", "b": ["x", "2"]], "text": "users.get",
                "correlation_id": "123", "message_id": .stringConvertible(456),
            ],
            provided: ["trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"])
        #expect(object["ts"] as? String == "2026-11-29T09:34:53.541Z")
        #expect(!text.contains("\n"), "one event is one line")
        #expect(object["msg"] as? String == "first\nsecond \u{1B}[31m")
        #expect(text.contains(#""attempt":3"#))
        #expect(text.contains(#""ratio":0.25"#))
        #expect(text.contains(#""negative":-12"#))
        #expect(text.contains(#""count":42"#))
        #expect(object["id"] as? String == "007", "a leading zero is an id, not a number")
        #expect(object["exponent"] as? String == "1e3")
        #expect(object["big"] as? String == "123456789012345678901234567890", "beyond Int64 stays text, exactly")
        #expect(object["text"] as? String == "users.get")
        #expect(object["correlation_id"] as? String == "123", "an identifier stays text, whatever it looks like")
        #expect(object["message_id"] as? String == "456")
        #expect((object["nested"] as? [String: Any])?["a"] as? Int == 1)
        #expect(object["trace_id"] as? String == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(object["span_id"] as? String == "00f067aa0ba902b7")
        #expect(object["service"] as? String == "users")
        #expect(object["level"] as? String == "info")
    }

    @Test("trace headers: only strings of at most 512 bytes reach the instrument", arguments: [
        (AMQPFieldValue.string("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), true),
        (.string(String(repeating: "f", count: 10_240)), false),
        (.string(String(repeating: "a", count: 513)), false),
        (.int(42), false),
        (.bytes(Data("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".utf8)), false),
        (.table(["traceparent": .string("x")]), false),
        (.void, false),
    ])
    func extractorLimits(value: AMQPFieldValue, passes: Bool) {
        let extracted = AMQPHeadersExtractor().extract(key: "traceparent", from: ["traceparent": value])
        #expect((extracted != nil) == passes)
    }

    @Test("hostile traceparents without a tracer: extract and inject do nothing and never trap", arguments: [
        "garbage", "", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        String(repeating: "0", count: 10_240), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{0}",
    ])
    func hostileWithoutTracer(traceparent: String) {
        let context = MessageTracing.extract(from: ["traceparent": .string(traceparent), "tracestate": .string(traceparent)])
        #expect(MessageTracing.traceparent(of: context) == nil)
        #expect(MessageTracing.traceparent(of: MessageTracing.context(traceparent: traceparent)) == nil)
    }

    @Test("without a bootstrapped tracer no span is made and its name and context are not even computed")
    func noTracerNoWork() {
        let evaluated = Mutex(0)
        func counted(_ text: String) -> String {
            evaluated.withLock { $0 += 1 }
            return text
        }
        #expect(!MessageTracing.isEnabled)
        #expect(MessageTracing.startSpan(counted("send users.get"), context: MessageTracing.context(traceparent: counted("x")), ofKind: .client) == nil)
        #expect(evaluated.withLock { $0 } == 0)
    }

    @Test("trace export is on only with an OTLP endpoint, and OTEL_SDK_DISABLED turns it off")
    func tracingRequested() {
        #expect(!Observability.tracingRequested([:]))
        #expect(!Observability.tracingRequested(["OTEL_EXPORTER_OTLP_ENDPOINT": ""]))
        #expect(Observability.tracingRequested(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"]))
        #expect(Observability.tracingRequested(["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:4318/v1/traces"]))
        #expect(!Observability.tracingRequested(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_SDK_DISABLED": "true"]))
    }

    @Test("process metrics from /proc: the four families with plausible values")
    func processMetrics() throws {
        let text = ProcessMetrics.read()
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            if parts.count == 2 { values[String(parts[0])] = Double(parts[1]) }
        }
        #expect(text.contains("# TYPE process_cpu_seconds_total counter"))
        #expect(try #require(values["process_cpu_seconds_total"]) >= 0)
        #expect(try #require(values["process_resident_memory_bytes"]) > 1_000_000)
        #expect(try #require(values["process_open_fds"]) >= 3)
        let start = try #require(values["process_start_time_seconds"])
        #expect(abs(start - Date().timeIntervalSince1970) < 86_400, "started within a day, not at the epoch")
        // A command name with spaces and parentheses does not shift the fields.
        let fields = try #require(ProcessMetrics.statFields("123 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14"))
        #expect(fields.field(3) == nil)  // 'S' is not a number
        #expect(fields.field(14) == 11)
        #expect(fields.field(99) == nil)
    }

    @Test("a flow as a causation tree: children under their cause, gaps after it, an unsettled order marked")
    func flowTree() {
        let events = [
            EventFlow.Node(id: "e1", type: "order.created", source: "orders", aggregateId: "o1", causationId: "request-1", timestamp: "2026-11-29T09:00:00.000Z"),
            EventFlow.Node(id: "e2", type: "payment.succeeded", source: "payments", aggregateId: "o1", causationId: "e1", timestamp: "2026-11-29T09:00:00.060Z"),
            EventFlow.Node(id: "e3", type: "order.confirmed", source: "orders", aggregateId: "o1", causationId: "e2", timestamp: "2026-11-29T09:00:00.075Z"),
            EventFlow.Node(id: "e4", type: "order.created", source: "orders", aggregateId: "o2", causationId: "request-2", timestamp: "2026-11-29T09:00:01.000Z"),
            // A cycle and a self-cause from a hostile publisher cannot loop.
            EventFlow.Node(id: "e5", type: "x", causationId: "e5", timestamp: "not a time"),
        ]
        let flow = EventFlow.build(correlationId: "c", events: events)
        #expect(flow.count == 5)
        #expect(flow.events.map(\.id) == ["e1", "e4", "e5"])
        #expect(flow.events[0].children.map(\.id) == ["e2"])
        #expect(flow.events[0].children[0].gapMilliseconds == 60)
        #expect(flow.events[0].children[0].children.map(\.id) == ["e3"])
        #expect(flow.events[0].children[0].children[0].gapMilliseconds == 15)
        #expect(flow.events[1].gapMilliseconds == 1000)
        #expect(flow.events[2].gapMilliseconds == nil)
        #expect(flow.status == .stopped)
        #expect(flow.problems.count == 1)
        #expect(flow.problems.first?.contains("o2") == true)

        let settled = EventFlow.build(correlationId: "c", events: Array(events.prefix(3)))
        #expect(settled.status == .complete)
        var parked = settled
        parked.markDeadLettered(["e2": ["orders.events.dlq"], "r9": ["users.rpc.dlq"]])
        #expect(parked.status == .stopped)
        #expect(parked.events[0].children[0].deadLetteredIn == ["orders.events.dlq"])
        #expect(parked.problems.count == 2)
        #expect(EventFlow.build(correlationId: "c", events: []).status == .empty)
    }

    @Test("a charge for an order cancelled meanwhile: stopped until refunded; settling events of another flow count when the store found them")
    func chargeAfterCancellation() {
        let created = EventFlow.Node(id: "e1", type: "order.created", aggregateId: "o1", causationId: "request-1", timestamp: "2026-11-29T09:00:00.000Z")
        let paid = EventFlow.Node(id: "e2", type: "payment.succeeded", aggregateId: "o1", causationId: "e1", timestamp: "2026-11-29T09:00:01.000Z")
        let cancelled = EventFlow.Node(id: "e3", type: "order.cancelled", aggregateId: "o1", causationId: "request-2", timestamp: "2026-11-29T09:00:00.500Z")
        let refunded = EventFlow.Node(id: "e4", type: "payment.refunded", aggregateId: "o1", causationId: "e3", timestamp: "2026-11-29T09:00:01.100Z")

        let charged = EventFlow.build(correlationId: "c", events: [created, cancelled, paid])
        #expect(charged.status == .stopped)
        #expect(charged.problems == ["payment.succeeded o1 has no order.confirmed or payment.refunded: the flow stopped half way"])
        #expect(EventFlow.build(correlationId: "c", events: [created, cancelled, paid, refunded]).status == .complete)

        // The order's flow; the cancellation and its refund are the cancel request's flow.
        #expect(EventFlow.unsettled([created, paid]).map(\.event.id) == ["e1", "e2"])
        #expect(EventFlow.build(correlationId: "a", events: [created, paid]).problems.count == 2)
        #expect(EventFlow.build(correlationId: "a", events: [created, paid], settledElsewhere: ["e1", "e2"]).status == .complete)
        #expect(EventFlow.build(correlationId: "b", events: [cancelled, refunded]).status == .complete)
    }
}
