import Foundation
import Hummingbird
import Testing
import NIOCore

/// An HTTP server on a loopback port of its own that gives every GET the same answer: what
/// `--management-url` reaches when it points at something other than RabbitMQ's management API,
/// or at a server that sends a head and then stalls, trickles or never ends its body.
enum StubHTTPServer {
    struct NotListening: Error {}

    /// How the body of the answer is sent.
    enum Body: Sendable, CustomTestStringConvertible {
        /// `answer` whole, with its length.
        case whole
        /// `Content-Length: 100`, the first byte of `answer`, then nothing.
        case stalling
        /// `Content-Length: 100`, then one byte of `answer` every `interval`.
        case trickling(interval: Duration)
        /// No length, chunks of `answer` repeated without end, as fast as they are taken.
        case endless

        var testDescription: String {
            switch self {
            case .whole: "whole"
            case .stalling: "stalls after one byte of 100"
            case .trickling(let interval): "one byte every \(interval)"
            case .endless: "endless body"
            }
        }
    }

    /// Runs `body` with the server's base URL (`http://127.0.0.1:<port>`), then stops the server.
    /// `location`: a `Location` header on every answer (for a redirect).
    static func with<T>(
        status: HTTPResponse.Status, contentType: String, answer: String, sending mode: Body = .whole, location: String? = nil,
        _ body: (String) async throws -> T
    ) async throws -> T {
        let router = Router()
        router.get("**") { _, _ -> Response in
            var headers: HTTPFields = [.contentType: contentType]
            if let location { headers[.location] = location }
            return Response(status: status, headers: headers, body: Self.body(answer, mode))
        }
        // Port 0: the kernel picks a free one, which the running server reports.
        let (ports, reported) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                reported.yield(channel.localAddress?.port ?? 0)
                reported.finish()
            })
        let server = Task {
            defer { reported.finish() }  // a server that failed to start reports nothing
            try await app.runService(gracefulShutdownSignals: [])
        }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw NotListening() }
        return try await body("http://127.0.0.1:\(port)")
    }

    private static func body(_ answer: String, _ mode: Body) -> ResponseBody {
        let bytes = Array(answer.utf8)
        switch mode {
        case .whole:
            return ResponseBody(byteBuffer: ByteBuffer(string: answer))
        case .stalling:
            return ResponseBody(contentLength: 100) { writer in
                try await writer.write(ByteBuffer(bytes: bytes.prefix(1)))
                // Until the client gives up (the server's task is cancelled at the end of the test).
                try await Task.sleep(for: .seconds(600))
            }
        case .trickling(let interval):
            return ResponseBody(contentLength: 100) { writer in
                for index in 0..<100 {
                    try await writer.write(ByteBuffer(bytes: [bytes.isEmpty ? 32 : bytes[index % bytes.count]]))
                    try await Task.sleep(for: interval)
                }
                try await writer.finish(nil)
            }
        case .endless:
            return ResponseBody { writer in
                let chunk = ByteBuffer(bytes: Array(repeating: bytes.isEmpty ? [32] : bytes, count: max(1, 65_536 / max(1, bytes.count))).joined())
                while !Task.isCancelled { try await writer.write(chunk) }
            }
        }
    }
}
