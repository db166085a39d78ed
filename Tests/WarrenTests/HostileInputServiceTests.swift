import Foundation
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP

/// The example service as a real process, fed what used to kill it. Runs in the system-test
/// round (its name matches the Makefile's SYSTEM_TESTS): each test starts a process.
/// Runs `body` with a fresh echo process and a connection, and stops both whatever happens.
private func withEcho(
    environment: [String: String] = [:], _ body: (EchoProcess, AMQPConnection, AMQPChannel) async throws -> Void
) async throws {
    let echo = try EchoProcess(environment: environment)
    let connection = try await Broker.connect()
    let channel = try await connection.openChannel()
    do {
        try await echo.waitUntilHealthy()
        try await body(echo, connection, channel)
    } catch {
        await echo.cleanUp(channel)
        await connection.close()
        throw error
    }
    await echo.cleanUp(channel)
    await connection.close()
}

@Suite("A service process under hostile input", .timeLimit(.minutes(2)))
struct HostileInputServiceTests {
    /// Sends a raw request to `<echo>.rpc` with `deadline` as x-deadline and returns the reply,
    /// as a Java or Go client (floats) or a hand-written one would send it.
    private func call(_ echo: EchoProcess, channel: AMQPChannel, replyQueue: String, deadline: AMQPFieldValue, text: String) async throws -> AMQPDelivery? {
        try await channel.publish(
            Data(#"{"text":"\#(text)"}"#.utf8), routingKey: "\(echo.name).rpc",
            properties: AMQPProperties(
                contentType: "application/json", headers: [WireHeader.deadline: deadline], correlationID: text, replyTo: replyQueue,
                type: "\(echo.name).echo"))
        return try await pollGet(channel, queue: replyQueue, within: .seconds(10))
    }

    // NaN and ±infinity cannot reach a service: RabbitMQ closes the publisher's connection on
    // them (541), and WireLimits refuses them before sending. Their decoding is unit-tested.
    @Test("x-deadline as a double 1e300 or -1e300, huge integers or text does not kill the service; it answers, then answers the next call",
          arguments: [
            AMQPFieldValue.double(1e300), .double(-1e300), .double(Double.greatestFiniteMagnitude), .string("1e300"), .string("NaN"),
            .int(Int64.max), .int(Int64.min),
          ])
    func hostileDeadline(deadline: AMQPFieldValue) async throws {
        try await withEcho { echo, connection, channel in
            let replyQueue = Broker.unique("replies")
            try await channel.declareQueue(replyQueue, durable: false, exclusive: true, autoDelete: true)

            let reply = try #require(try await call(echo, channel: channel, replyQueue: replyQueue, deadline: deadline, text: "hostile"))
            let status = reply.properties.headers?[WireHeader.status]?.stringValue
            let expired = deadline == .double(-1e300) || deadline == .int(Int64.min)
            #expect(status == (expired ? "error" : "ok"), "\(String(decoding: reply.body, as: UTF8.self))")
            if expired { #expect(String(decoding: reply.body, as: UTF8.self).contains("timeout")) }
            try reply.ack()

            #expect(echo.process.isRunning)
            let client = try await RPCClient.start(connection: connection)
            // Keeps the calls' deadlines for this scope (cancelled at its end).
            async let _ = client.run()
            let next = try await client.call("\(echo.name).echo", EchoBody(text: "next"), as: EchoBody.self)
            #expect(next.text == "next")
            #expect(echo.process.isRunning)
            await client.close()
        }
    }

    @Test("a NaN or infinite header is refused before it is sent (RabbitMQ would close the connection); the connection stays usable",
          arguments: [Double.nan, .infinity, -.infinity])
    func nonFiniteRefused(value: Double) async throws {
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        let queue = Broker.unique("nonfinite")
        try await channel.declareQueue(queue, durable: false, exclusive: true, autoDelete: true)
        do {
            try await channel.publish(Data("{}".utf8), routingKey: queue, properties: AMQPProperties(headers: [WireHeader.deadline: .double(value)]))
            Issue.record("a non-finite double was sent")
        } catch AMQPError.invalidArgument(let detail) {
            #expect(detail.contains("finite"))
        }
        try await channel.publish(Data("{}".utf8), routingKey: queue, properties: AMQPProperties(headers: [WireHeader.deadline: .double(1e300)]))
        #expect(try await pollGet(channel, queue: queue) != nil)
        await connection.close()
    }

    @Test("/health reports a consumer that holds a request and finishes none for HEALTH_STALL_SECONDS, and recovers after")
    func stalledConsumer() async throws {
        try await withEcho(environment: ["HEALTH_STALL_SECONDS": "1", "RPC_CONCURRENCY": "1"]) { echo, connection, _ in
            let (status, health) = try await echo.get("/health")
            #expect(status == 200)
            #expect(health.contains(#""queue":"\#(echo.name).rpc","state":"consuming""#))

            let client = try await RPCClient.start(connection: connection)
            // Keeps the calls' deadlines for this scope (cancelled at its end).
            async let _ = client.run()
            let slow = Task { try await client.call("\(echo.name).echo", EchoBody(text: "slow", sleepMilliseconds: 4000), as: EchoBody.self, timeout: .seconds(10)) }
            var stalled: (Int, String) = (0, "")
            for _ in 0..<30 {
                stalled = try await echo.get("/health")
                if stalled.0 == 503 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(stalled.0 == 503)
            #expect(stalled.1.contains(#""state":"stalled""#), "\(stalled.1)")
            #expect(try await slow.value.text == "slow")
            let (after, _) = try await echo.get("/health")
            #expect(after == 200)
            await client.close()
        }
    }
}
