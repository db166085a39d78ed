import Foundation
import Hummingbird
import NIOCore
import Synchronization
import WarrenTestSupport

/// An OTLP/HTTP trace receiver (JSON encoding) on a loopback port of its own: what the
/// processes under test export to with `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<port>`
/// and `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`. It keeps every span it is sent.
final class OTLPReceiver: Sendable {
    struct ReceivedSpan: Sendable, CustomStringConvertible {
        var service: String
        var traceID: String
        var spanID: String
        var parentSpanID: String?
        var name: String
        /// OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
        var kind: Int
        var attributes: [String: String]

        var description: String { "\(service): \(name) kind \(kind) \(spanID) ← \(parentSpanID ?? "root") [\(traceID)]" }
    }

    let port: Int
    private let received = Mutex<[ReceivedSpan]>([])
    private let requests = Mutex(0)
    private let server = Mutex<Task<Void, any Error>?>(nil)

    init() {
        port = freePort()
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// The environment that makes a Warren process export its spans here, quickly.
    var environment: [String: String] {
        ["OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_BSP_SCHEDULE_DELAY": "100"]
    }

    var spans: [ReceivedSpan] { received.withLock { $0 } }
    var exportRequests: Int { requests.withLock { $0 } }

    func start() async throws {
        let router = Router()
        router.post("v1/traces") { [self] request, _ -> Response in
            let body = try await request.body.collect(upTo: 32 << 20)
            let spans = Self.parse(Data(body.readableBytesView))
            received.withLock { $0 += spans }
            requests.withLock { $0 += 1 }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        server.withLock { $0 = Task { try await app.runService(gracefulShutdownSignals: []) } }
        // Listening once a connection is accepted.
        for _ in 0..<100 {
            if Self.accepts(port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func stop() {
        server.withLock { $0?.cancel() }
    }

    /// Spans of one trace.
    func spans(inTrace traceID: String) -> [ReceivedSpan] { spans.filter { $0.traceID == traceID } }

    private static func accepts(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// ExportTraceServiceRequest in OTLP's JSON encoding; ids as the exporter writes them
    /// (base64 of the bytes, protobuf's JSON mapping, or hex) are returned as lower-case hex.
    static func parse(_ body: Data) -> [ReceivedSpan] {
        guard let root = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return [] }
        var spans: [ReceivedSpan] = []
        for resourceSpans in root["resourceSpans"] as? [[String: Any]] ?? [] {
            let resource = attributes((resourceSpans["resource"] as? [String: Any])?["attributes"])
            for scope in resourceSpans["scopeSpans"] as? [[String: Any]] ?? [] {
                for span in scope["spans"] as? [[String: Any]] ?? [] {
                    guard let traceID = hex(span["traceId"]), let spanID = hex(span["spanId"]) else { continue }
                    let kind = (span["kind"] as? Int) ?? Int(span["kind"] as? String ?? "") ?? 0
                    spans.append(
                        ReceivedSpan(
                            service: resource["service.name"] ?? "?", traceID: traceID, spanID: spanID, parentSpanID: hex(span["parentSpanId"]),
                            name: span["name"] as? String ?? "", kind: kind, attributes: attributes(span["attributes"])))
                }
            }
        }
        return spans
    }

    private static func attributes(_ value: Any?) -> [String: String] {
        var result: [String: String] = [:]
        for attribute in value as? [[String: Any]] ?? [] {
            guard let key = attribute["key"] as? String, let value = attribute["value"] as? [String: Any], let first = value.first else { continue }
            result[key] = "\(first.value)"
        }
        return result
    }

    private static func hex(_ value: Any?) -> String? {
        guard let text = value as? String, !text.isEmpty else { return nil }
        if text.count == 32 || text.count == 16, text.allSatisfy(\.isHexDigit) { return text.lowercased() }
        guard let data = Data(base64Encoded: text), !data.isEmpty, data.contains(where: { $0 != 0 }) else { return nil }
        return data.map { String(format: "%02x", $0) }.joined()
    }
}
