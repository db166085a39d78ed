import Foundation
import Hummingbird
import NIOCore

/// An HTTP server on a loopback port of its own that gives every GET the same answer: what
/// `--management-url` reaches when it points at something other than RabbitMQ's management API.
enum StubHTTPServer {
    struct NotListening: Error {}

    /// Runs `body` with the server's base URL (`http://127.0.0.1:<port>`), then stops the server.
    static func with<T>(
        status: HTTPResponse.Status, contentType: String, answer: String, _ body: (String) async throws -> T
    ) async throws -> T {
        let router = Router()
        router.get("**") { _, _ -> Response in
            Response(status: status, headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(string: answer)))
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
}
