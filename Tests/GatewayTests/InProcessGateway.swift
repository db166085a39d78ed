import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Prometheus
import Synchronization
import Tracing
import Warren
@testable import WarrenGateway

/// Services as a closure: what each operation answers, and every request message it was sent.
/// The gateway's routing, authorization and error mapping run against it without a broker.
final class FakeServices: ServiceCaller {
    struct Sent: Sendable {
        var operation: String
        var body: Data
        var envelope: Envelope
        var timeout: Duration?

        /// The body as a JSON object (the request message the service would read).
        var fields: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
    }

    typealias Answer = @Sendable (Sent) -> Result<PlainReply, ServiceError>

    private let answer: Answer
    private let log = Mutex<[Sent]>([])

    init(_ answer: @escaping Answer = { _ in .success(PlainReply(isError: false, body: Data("{}".utf8))) }) {
        self.answer = answer
    }

    var sent: [Sent] { log.withLock { $0 } }
    var operations: [String] { sent.map(\.operation) }

    func call(
        _ operation: String, body: Data, timeout: Duration?, envelope: Envelope, context: ServiceContext?,
        completion: @escaping @Sendable (Result<PlainReply, ServiceError>) -> Void
    ) {
        let message = Sent(operation: operation, body: body, envelope: envelope, timeout: timeout)
        log.withLock { $0.append(message) }
        completion(answer(message))
    }

    static func reply(_ json: String) -> Result<PlainReply, ServiceError> {
        .success(PlainReply(isError: false, body: Data(json.utf8)))
    }

    static func errorReply(_ code: ServiceError.Code, _ message: String) -> Result<PlainReply, ServiceError> {
        .success(PlainReply(isError: true, body: Data(#"{"error":{"code":"\#(code.rawValue)","message":"\#(message)"}}"#.utf8)))
    }
}

/// Every line logged through it, with its level and metadata (the logger's own included).
final class RecordedLog: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let lines = Mutex<[Line]>([])
    var all: [Line] { lines.withLock { $0 } }

    /// A logger at `trace` whose lines this records.
    var logger: Logger {
        Logger(label: "recorded") { _ in Handler(log: self) }
    }

    private struct Handler: LogHandler {
        let log: RecordedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let line = Line(level: event.level, message: "\(event.message)", metadata: self.metadata.merging(event.metadata ?? [:]) { $1 })
            log.lines.withLock { $0.append(line) }
        }
    }
}

/// The gateway's responder over `FakeServices`, with the repository's route table and a token
/// authority of its own: every step of a request but the sockets and the broker.
struct InProcessGateway {
    static let secret = "in-process-gateway-test-secret-0123456789"
    static let routes: RouteTable = RouteTableTests.table

    let responder: GatewayResponder
    let services: FakeServices
    let tokens: TokenAuthority
    let configuration: GatewayConfiguration

    init(
        _ services: FakeServices = FakeServices(), environment: [String: String] = ["RATE_LIMIT_PER_SECOND": "0"],
        logger: Logger = Logger(label: "in-process-gateway")
    ) async throws {
        var environment = environment
        environment["JWT_SECRET"] = Self.secret
        configuration = try GatewayConfiguration(environment: environment)
        tokens = await TokenAuthority(secret: Self.secret, lifetime: configuration.tokenLifetime)
        self.services = services
        responder = GatewayResponder(
            routes: Self.routes, services: services, tokens: tokens, configuration: configuration, openAPI: Data("openapi: 3.1.0\n".utf8),
            health: nil, registry: PrometheusCollectorRegistry(), logger: logger)
    }

    /// A signed token for `subject` with `role`.
    func token(_ subject: String, role: String = "user") async throws -> String {
        try await tokens.issue(subject: subject, role: role)
    }

    /// Sends one request through `respond` and waits for its response.
    func send(
        _ method: HTTPMethod, _ uri: String, token: String? = nil, headers: [(String, String)] = [], body: String? = nil,
        bodyBytes: [UInt8]? = nil, remoteAddress: String = "192.0.2.1"
    ) async -> GatewayResponse {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        if let token { head.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if body != nil || bodyBytes != nil, !headers.contains(where: { $0.0.lowercased() == "content-type" }) {
            head.headers.add(name: "Content-Type", value: "application/json")
        }
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        let buffer = bodyBytes.map { ByteBuffer(bytes: $0) } ?? body.map { ByteBuffer(string: $0) }
        let request = GatewayRequest(
            head: head, body: buffer, remoteAddress: remoteAddress, requestID: responder.requestID(for: head))
        return await withCheckedContinuation { continuation in
            responder.respond(to: request) { continuation.resume(returning: $0) }
        }
    }
}

extension GatewayResponse {
    /// The body as a JSON object; empty when it is not one.
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:] }
    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String? { (json["error"] as? [String: Any])?["message"] as? String }
    var errorRequestID: String? { (json["error"] as? [String: Any])?["requestId"] as? String }
}

/// The gateway's connection pipeline (`GatewayHTTPServer.configure`) on an `EmbeddedChannel`:
/// raw bytes in, raw bytes out, with no socket. An `EmbeddedEventLoop` belongs to one thread, so
/// `exchange` does all its work in one synchronous call; only the paths that answer without a
/// task (a public route, a token already verified, every refusal) can be driven this way.
enum EmbeddedGateway {
    /// Each request's bytes written in turn on one connection, and what the server wrote back
    /// after each.
    static func exchange(_ gateway: InProcessGateway, _ requests: [String]) throws -> [String] {
        try session(gateway, requests).answers
    }

    /// As `exchange`, and whether the server had closed the connection at the end.
    static func session(_ gateway: InProcessGateway, _ requests: [String]) throws -> (answers: [String], closed: Bool) {
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        try GatewayHTTPServer.configure(
            channel.pipeline.syncOperations, settings: HTTPEdgeSettings(gateway.configuration), responder: gateway.responder)
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.9", port: 40_000)).wait()
        var answers: [String] = []
        for request in requests {
            if channel.isActive { try channel.writeInbound(ByteBuffer(string: request)) }
            channel.embeddedEventLoop.run()
            var out = ""
            while let part = try channel.readOutbound(as: ByteBuffer.self) {
                out += String(decoding: part.readableBytesView, as: UTF8.self)
            }
            answers.append(out)
        }
        return (answers, !channel.isActive)
    }

    /// The status code of the first response in `text`.
    static func status(_ text: String) -> Int? {
        guard text.hasPrefix("HTTP/1.1 ") else { return nil }
        return Int(text.dropFirst(9).prefix(3))
    }

    /// The JSON body of the first response in `text`, when it has one.
    static func json(_ text: String) -> [String: Any] {
        guard let end = text.range(of: "\r\n\r\n") else { return [:] }
        let body = Data(text[end.upperBound...].utf8)
        return (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }
}
