import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import WarrenTestSupport

/// The secret every test gateway signs with, so tests can mint tokens (good and forged) themselves.
let testSecret = "gateway-test-secret-0123456789abcdef0123456789"

/// `api-gateway` as a real process on a random port, in a test's vhost.
final class GatewayProcess: Sendable {
    let process: ServiceProcess
    let session: URLSession
    var port: Int { process.port }

    /// `openAPI`: a document of the test's own (written to a temporary file), or nil for the
    /// repository's `schemas/openapi.yaml`.
    init(vhost: TestVhost, openAPI: String? = nil, environment: [String: String] = [:]) throws {
        let path: String
        if let openAPI {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("openapi-\(UUID().uuidString.prefix(8)).yaml")
            try openAPI.write(to: file, atomically: true, encoding: .utf8)
            path = file.path
        } else {
            path = Self.repository.appendingPathComponent("schemas/openapi.yaml").path
        }
        var merged = [
            "AMQP_URL": vhost.url, "OPENAPI_PATH": path, "JWT_SECRET": testSecret, "RATE_LIMIT_PER_SECOND": "0",
            "LOG_LEVEL": "debug",
        ]
        for (key, value) in environment { merged[key] = value }
        process = try ServiceProcess("api-gateway", environment: merged)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 64
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
    }

    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..").standardized
    }

    /// Waits for the gateway's `ready` log line (it is listening).
    func waitUntilReady() async throws {
        try await waitForLog(process, "ready")
    }

    struct HTTPResult: Sendable {
        var status: Int
        var headers: [String: String]
        var body: Data

        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }

        func header(_ name: String) -> String? {
            headers.first { $0.key.lowercased() == name.lowercased() }?.value
        }
    }

    func request(
        _ method: String, _ path: String, json: Any? = nil, body: Data? = nil, contentType: String? = nil, token: String? = nil,
        headers: [String: String] = [:]
    ) async throws -> HTTPResult {
        let url = try #require(URL(string: "http://127.0.0.1:\(port)\(path)"))
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        } else if let body {
            request.httpBody = body
        }
        if let contentType { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await session.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields { fields["\(name)"] = "\(value)" }
        return HTTPResult(status: http.statusCode, headers: fields, body: data)
    }

    func stop() async {
        session.invalidateAndCancel()
        await process.stop()
    }
}

/// Waits until `process` logs `message` (JSON logs: key `msg`).
func waitForLog(_ process: ServiceProcess, _ message: String, within timeout: Duration = .seconds(60)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if process.logLines.contains(where: { ($0["msg"] as? String ?? $0["message"] as? String) == message }) { return }
        guard process.isRunning else {
            Issue.record("\(process.executable) exited before logging '\(message)':\n\(process.log)")
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("\(process.executable) did not log '\(message)' within \(timeout):\n\(process.log)")
}
