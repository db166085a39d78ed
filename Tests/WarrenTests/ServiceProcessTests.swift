import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP

/// The example service (`warren-echo`) as a real process: what an operator sees.
final class EchoProcess: Sendable {
    let name = "echo\(UUID().uuidString.prefix(6).lowercased())"
    let port = freePort()
    let process = Process()
    private let output = OutputBuffer()

    init(environment extra: [String: String] = [:]) throws {
        let executable = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../.build/debug/warren-echo").standardized
        process.executableURL = executable
        var environment = ProcessInfo.processInfo.environment
        environment["ECHO_SERVICE_NAME"] = name
        environment["HTTP_PORT"] = "\(port)"
        environment["LOG_FORMAT"] = "json"
        environment["RPC_PREFETCH"] = "200"
        environment["RPC_CONCURRENCY"] = "200"
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        pipe.fileHandleForReading.readabilityHandler = { [output] handle in
            output.append(handle.availableData)
        }
        try process.run()
    }

    var logLines: [[String: Any]] {
        output.text
            .split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func get(_ path: String) async throws -> (Int, String) {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    func waitUntilHealthy() async throws {
        for _ in 0..<100 {
            if let (status, _) = try? await get("/health"), status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("warren-echo did not become healthy")
    }

    func cleanUp(_ channel: AMQPChannel) async {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        _ = try? await channel.deleteQueue("\(name).rpc")
        _ = try? await channel.deleteQueue("\(name).rpc.dlq")
    }
}

final class OutputBuffer: Sendable {
    private let data = Mutex(Data())
    func append(_ more: Data) { data.withLock { $0.append(more) } }
    var text: String { data.withLock { String(decoding: $0, as: UTF8.self) } }
}

struct EchoBody: Codable, Sendable {
    var text: String
    var sleepMilliseconds: Int?
}

@Suite("A service process", .timeLimit(.minutes(2)))
struct ServiceProcessTests {
    @Test("SIGTERM with 100 requests in flight: every one is answered, then the process exits 0")
    func sigtermDrains() async throws {
        let echo = try EchoProcess()
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        try await echo.waitUntilHealthy()
        let client = try await RPCClient.start(connection: connection)
        // Keeps the calls' deadlines for this scope (cancelled at its end).
        async let _ = client.run()
        let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<100 {
                group.addTask {
                    let reply = try await client.call("\(echo.name).echo", EchoBody(text: "\(index)", sleepMilliseconds: 1000), as: EchoBody.self)
                    return reply.text == "\(index)"
                }
            }
            // All 100 in the service's hands (none left in the queue), then SIGTERM: a fixed
            // pause is not enough on a loaded machine, and a request still queued when the
            // consumer stops is rightly reported as having nobody to run it.
            try await Task.sleep(for: .milliseconds(300))
            for _ in 0..<100 {
                if try await channel.inspectQueue("\(echo.name).rpc").messageCount == 0 { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            echo.process.terminate()  // SIGTERM
            var answered = 0
            for try await ok in group where ok { answered += 1 }
            return answered
        }
        #expect(answered == 100)
        echo.process.waitUntilExit()
        #expect(echo.process.terminationStatus == 0)
        let lines = echo.logLines
        #expect(lines.contains { $0["msg"] as? String == "draining" })
        #expect(lines.contains { $0["msg"] as? String == "stopped" })
        await client.close()
        await echo.cleanUp(channel)
        await connection.close()
    }

    @Test("health, metrics and JSON logs with the correlation id of each request")
    func observability() async throws {
        let echo = try EchoProcess()
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        try await echo.waitUntilHealthy()
        let (status, health) = try await echo.get("/health")
        #expect(status == 200)
        #expect(health.contains(#""broker":"connected""#))

        let client = try await RPCClient.start(connection: connection)
        // Keeps the calls' deadlines for this scope (cancelled at its end).
        async let _ = client.run()
        let envelope = Envelope(correlationID: "flow-\(echo.name)")
        _ = try await client.call("\(echo.name).echo", EchoBody(text: "hi"), as: EchoBody.self, envelope: envelope)
        // An operation the service does not have is answered, and counted under "unknown": a
        // client cannot add metric series by inventing names.
        let invented = try await client.call("\(echo.name).invented-\(UUID().uuidString)", body: Data("{}".utf8))
        #expect(invented.isError)
        let (_, metrics) = try await echo.get("/metrics")
        #expect(metrics.contains("warren_requests_total"))
        #expect(metrics.contains(#"operation="\#(echo.name).echo""#))
        #expect(metrics.contains(#"operation="unknown""#))
        #expect(!metrics.contains("invented-"))
        try await waitUntil {
            echo.logLines.contains { $0["msg"] as? String == "echoing" && $0["correlation_id"] as? String == "flow-\(echo.name)" }
        }
        let line = try #require(echo.logLines.first { $0["msg"] as? String == "echoing" })
        #expect(line["type"] as? String == "\(echo.name).echo")
        #expect(line["message_id"] != nil)
        #expect(line["level"] as? String == "info")
        await client.close()
        await echo.cleanUp(channel)
        await connection.close()
    }
}
