import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// `warren flow` on real sagas: the services and the event store as processes, in a vhost of the test's own.
@Suite("warren flow", .serialized, .timeLimit(.minutes(4)))
struct FlowTests {
    @Test("a confirmed order: order.created → payment.succeeded → order.confirmed, from which service, with gaps; a stopped one is marked, also by a dead letter")
    func sagaFlows() async throws {
        try await TestVhost.with { vhost, connection in
            let data = try TemporaryDirectory()
            defer { data.remove() }
            let environment = ["AMQP_URL": vhost.url, "DATA_DIR": data.path, "BCRYPT_COST": "4"]
            let services = try ["user-service", "order-service", "payment-service", "event-store"].map {
                try ServiceProcess($0, environment: environment)
            }
            for service in services { try await service.waitUntilReady() }
            try await waitForLogLine(services[3], "recording every event")
            let rpc = try await RPCClient.start(connection: connection, configuration: .init(defaultTimeout: .seconds(10)))
            // Keeps the calls' deadlines for this scope (cancelled at its end).
            async let _ = rpc.run()

            let user = try await rpc.call(
                "users.create", body: Data(#"{"name":"Ada","email":"ada@example.com","password":"correct horse battery"}"#.utf8))
            let userID = try #require((try JSONSerialization.jsonObject(with: user.body) as? [String: Any])?["id"] as? String)
            let flow = "flow-\(UUID().uuidString.prefix(8).lowercased())"
            let order = try await rpc.call(
                "orders.create", body: Data(#"{"userId":"\#(userID)","items":[{"sku":"book","quantity":1,"unitPriceCents":1250}]}"#.utf8),
                envelope: Envelope(correlationID: flow))
            #expect(!order.isError)

            var result = try await WarrenCLI.run(["flow", flow, "--json"], url: vhost.url)
            for _ in 0..<100 where (result.json as? [String: Any])?["count"] as? Int != 3 {
                try await Task.sleep(for: .milliseconds(100))
                result = try await WarrenCLI.run(["flow", flow, "--json"], url: vhost.url)
            }
            #expect(result.status == 0, "\(result)")
            let json = try #require(result.json as? [String: Any])
            #expect(json["status"] as? String == "complete")
            let root = try #require((json["events"] as? [[String: Any]])?.first)
            #expect(root["type"] as? String == "order.created")
            #expect(root["source"] as? String == "orders")
            let paid = try #require((root["children"] as? [[String: Any]])?.first)
            #expect(paid["type"] as? String == "payment.succeeded")
            #expect(paid["source"] as? String == "payments")
            #expect((paid["gapMilliseconds"] as? Int).map { $0 >= 0 && $0 < 10_000 } == true)

            let text = try await WarrenCLI.run(["flow", flow], url: vhost.url)
            #expect(text.status == 0, "\(text)")
            let lines = text.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "flow \(flow): complete, 3 events")
            #expect(lines.count == 4, "\(text.stdout)")
            #expect(lines.dropFirst().first?.contains("  order.created  from orders  +0 ms  ") == true, "\(text.stdout)")
            #expect(lines.dropFirst(2).first?.contains("  └─ payment.succeeded  from payments  +") == true, "\(text.stdout)")
            #expect(lines.dropFirst(3).first?.contains("     └─ order.confirmed  from orders  +") == true, "\(text.stdout)")

            // Dead-letter queues that cannot be checked: the same flow is not complete but
            // unknown (exit 5), with why, in text and JSON; --no-dlq skips the check on purpose.
            let unreachable = ["--management-url", "http://127.0.0.1:1", "--management-timeout", "2s"]
            let unknown = try await WarrenCLI.run(["flow", flow] + unreachable, url: vhost.url)
            #expect(unknown.status == 5, "\(unknown)")
            #expect(unknown.stdout.hasPrefix("flow \(flow): UNKNOWN, 3 events: dead-letter queues could not be checked"), "\(unknown)")
            #expect(!unknown.stdout.contains("complete"), "\(unknown)")
            #expect(unknown.stderr.contains("dead-letter queues could not be checked: "), "\(unknown)")
            let unknownJSON = try await WarrenCLI.run(["flow", flow, "--json"] + unreachable, url: vhost.url)
            #expect(unknownJSON.status == 5, "\(unknownJSON)")
            #expect((unknownJSON.json as? [String: Any])?["status"] as? String == "unknown", "\(unknownJSON)")
            #expect((unknownJSON.json as? [String: Any])?["deadLettersUnchecked"] is String, "\(unknownJSON)")
            let skipped = try await WarrenCLI.run(["flow", flow, "--no-dlq"] + unreachable, url: vhost.url)
            #expect(skipped.status == 0, "\(skipped)")

            // Without the payment service the order stays pending: the flow stopped half way.
            await services[2].stop()
            let pending = "flow-\(UUID().uuidString.prefix(8).lowercased())"
            _ = try await rpc.call(
                "orders.create", body: Data(#"{"userId":"\#(userID)","items":[{"sku":"pen","quantity":1,"unitPriceCents":100}]}"#.utf8),
                envelope: Envelope(correlationID: pending))
            var stopped = try await WarrenCLI.run(["flow", pending], url: vhost.url)
            for _ in 0..<100 where !stopped.stdout.contains("order.created") {
                try await Task.sleep(for: .milliseconds(100))
                stopped = try await WarrenCLI.run(["flow", pending], url: vhost.url)
            }
            #expect(stopped.status == 1, "\(stopped)")
            #expect(stopped.stdout.contains("STOPPED HALF WAY"), "\(stopped)")
            #expect(stopped.stdout.contains("has no order.confirmed or order.cancelled"), "\(stopped)")

            // A message of the flow in a dead-letter queue is marked where it is, its id escaped.
            let channel = try await connection.openChannel()
            _ = try await channel.declareQueue("audit.events.dlq", durable: true)
            let hostileID = "evil\u{1B}[2Jid"
            try await channel.publish(
                Data("{}".utf8), exchange: "", routingKey: "audit.events.dlq",
                properties: AMQPProperties(headers: [WireHeader.correlationID: .string(flow)], messageID: hostileID, type: "order.created"))
            let parked = try await WarrenCLI.run(["flow", flow], url: vhost.url)
            #expect(parked.status == 1, "\(parked)")
            #expect(parked.stdout.contains("audit.events.dlq"), "\(parked)")
            #expect(!parked.stdout.contains("\u{1B}"), "strings from the broker are escaped")
            let parkedJSON = try await WarrenCLI.run(["flow", flow, "--json"], url: vhost.url)
            #expect((parkedJSON.json as? [String: Any])?["status"] as? String == "stopped")

            // No such flow, and a bad id.
            let empty = try await WarrenCLI.run(["flow", "no-such-flow"], url: vhost.url)
            #expect(empty.status == 1)
            #expect(empty.stdout.contains("no events"))
            #expect(try await WarrenCLI.run(["flow", ""], url: vhost.url).status == 2)

            await rpc.close()
            for service in services { await service.stop() }
        }
    }
}

/// Waits until `process` logs `message`.
private func waitForLogLine(_ process: ServiceProcess, _ message: String) async throws {
    try await waitUntil(within: .seconds(30)) { process.logLines.contains { $0["msg"] as? String == message } }
}
