import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("warren call", .timeLimit(.minutes(2)))
struct CallTests {
    @Test("calls a running service: reply on stdout (pretty, or raw with --json), error replies exit 1, no reply in time exits 4")
    func callEcho() async throws {
        try await TestVhost.with { vhost, connection in
            let echo = try ServiceProcess("warren-echo", environment: ["AMQP_URL": vhost.url])
            try await echo.waitUntilReady()

            let raw = try await WarrenCLI.run(["call", "echo.echo", #"{"text":"hello"}"#, "--json"], url: vhost.url)
            #expect(raw.status == 0, "\(raw)")
            #expect(raw.stdout == "{\"text\":\"hello\"}\n")

            let pretty = try await WarrenCLI.run(["call", "echo.echo", "-"], url: vhost.url, stdin: #"{"text":"from stdin"}"#)
            #expect(pretty.status == 0, "\(pretty)")
            #expect(pretty.stdout.contains("\n"))
            #expect((pretty.json as? [String: String]) == ["text": "from stdin"])

            let invalid = try await WarrenCLI.run(["call", "echo.echo", #"{"text":""}"#, "--json"], url: vhost.url)
            #expect(invalid.status == 1, "\(invalid)")
            #expect(invalid.stderr.contains("echo.echo replied invalid"))
            #expect(((invalid.json as? [String: Any])?["error"] as? [String: Any])?["code"] as? String == "invalid")

            let slow = try await WarrenCLI.run(
                ["call", "echo.echo", #"{"text":"zzz","sleepMilliseconds":3000}"#, "--timeout", "500ms", "--message-id", "call-4711"], url: vhost.url)
            #expect(slow.status == 4, "\(slow)")
            #expect(slow.stderr.contains("no reply from echo.rpc within 500ms"))
            // The outcome is unknown: the message says how to ask again without running it twice.
            #expect(slow.stderr.contains("--message-id call-4711"), "\(slow.stderr)")
            let noID = try await WarrenCLI.run(["call", "echo.echo", "--message-id", ""], url: vhost.url)
            #expect(noID.status == 2, "\(noID)")

            let nobody = try await WarrenCLI.run(["call", "nobody.get"], url: vhost.url)
            #expect(nobody.status == 1, "\(nobody)")
            #expect(nobody.stderr.contains("unavailable"))
            await echo.stop()
        }
    }

    @Test("--header and --correlation-id reach the service")
    func headersAndCorrelation() async throws {
        try await TestVhost.with { vhost, connection in
            var handlers = RPCHandlers()
            struct Empty: Codable, Sendable {}
            handlers.on("probe.headers", Empty.self) { _, context in
                ["correlation": context.envelope.correlationID, "tenant": context.envelope.headers["x-tenant"]?.stringValue ?? "-"]
            }
            let service = try await InProcessService("probe", handlers: handlers, connection: connection)
            let result = try await WarrenCLI.run(
                ["call", "probe.headers", "--header", "x-tenant=acme", "--correlation-id", "support-4711", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            #expect((result.json as? [String: String]) == ["correlation": "support-4711", "tenant": "acme"])
            await service.stop()
        }
    }

    @Test("exit codes: usage 2, broker unreachable 3, management API unreachable 3")
    func exitCodes() async throws {
        let badJSON = try await WarrenCLI.run(["call", "echo.echo", "{not json"], url: Broker.url)
        #expect(badJSON.status == 2, "\(badJSON)")
        #expect(badJSON.stderr.contains("not valid JSON"))
        let badOperation = try await WarrenCLI.run(["call", "echo"], url: Broker.url)
        #expect(badOperation.status == 2, "\(badOperation)")
        let badOption = try await WarrenCLI.run(["call", "echo.echo", "--timeout", "soon"], url: Broker.url)
        #expect(badOption.status == 2, "\(badOption)")
        let unreachable = try await WarrenCLI.run(["call", "echo.echo"], url: "amqp://guest:guest@127.0.0.1:1/")
        #expect(unreachable.status == 3, "\(unreachable)")
        #expect(unreachable.stderr.contains("cannot reach the broker at 127.0.0.1:1"))
        #expect(unreachable.stderr.contains("make run"))
        let badURL = try await WarrenCLI.run(["topology", "--url", "http://nope"], url: nil)
        #expect(badURL.status == 2, "\(badURL)")
        let noManagement = try await WarrenCLI.run(["dlq", "list", "--management-url", "http://127.0.0.1:1"], url: Broker.url)
        #expect(noManagement.status == 3, "\(noManagement)")
        #expect(noManagement.stderr.contains("rabbitmq_management"))
        let help = try await WarrenCLI.run(["--help"], url: nil)
        #expect(help.status == 0)
        #expect(help.stdout.contains("Exit codes"))
    }
}

@Suite("warren publish", .timeLimit(.minutes(2)))
struct PublishTests {
    @Test("publishes one event to warren.events with the contract's properties and confirms")
    func publishEvent() async throws {
        try await TestVhost.with { vhost, connection in
            let channel = try await connection.openChannel()
            try await channel.declareExchange(EventPublisher.exchange, type: "topic")
            try await channel.declareQueue("watch")
            try await channel.bindQueue("watch", exchange: EventPublisher.exchange, routingKey: "order.*")
            let result = try await WarrenCLI.run(
                ["publish", "order.created", #"{"id":"o1"}"#, "--message-id", "m1", "--correlation-id", "c1", "--header", "x-aggregate-id=o1", "--json"],
                url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let summary = try #require(result.json as? [String: Any], "\(result)")
            #expect(summary["published"] as? Int == 1)
            #expect(summary["unrouted"] as? Int == 0)
            let delivery = try #require(try await drain("watch", on: connection, expecting: 1).first)
            #expect(delivery.routingKey == "order.created")
            #expect(delivery.properties.type == "order.created")
            #expect(delivery.properties.messageID == "m1")
            #expect(delivery.properties.deliveryMode == .persistent)
            #expect(delivery.properties.contentType == "application/json")
            #expect(delivery.properties.headers?[WireHeader.correlationID] == "c1")
            #expect(delivery.properties.headers?[WireHeader.aggregateID] == "o1")
            #expect(delivery.body == Data(#"{"id":"o1"}"#.utf8))
        }
    }

    @Test("--lines publishes every line in order; a bad line publishes nothing and exits 2")
    func lines() async throws {
        try await TestVhost.with { vhost, connection in
            try await declareSubscriber("orders.events", keys: ["order.*"], on: connection)
            let good = (1...50).map { #"{"n":\#($0)}"# }.joined(separator: "\n") + "\n"
            let result = try await WarrenCLI.run(["publish", "order.created", "--queue", "orders.events", "--lines"], url: vhost.url, stdin: good)
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("published 50 events"))
            let received = try await drain("orders.events", on: connection, expecting: 50)
            #expect(received.map { String(decoding: $0.body, as: UTF8.self) } == (1...50).map { #"{"n":\#($0)}"# })
            #expect(Set(received.compactMap(\.properties.messageID)).count == 50)

            let bad = try await WarrenCLI.run(["publish", "order.created", "--queue", "orders.events", "--lines"], url: vhost.url, stdin: "{\"n\":1}\n{oops\n")
            #expect(bad.status == 2, "\(bad)")
            #expect(bad.stderr.contains("stdin line 2 is not valid JSON"))
            #expect(try await depth("orders.events", on: connection) == 0)
        }
    }

    @Test("--queue to a subscriber's queue publishes only a type its bindings route; otherwise, or without the management API, nothing is sent")
    func queueRoutes() async throws {
        try await TestVhost.with { vhost, connection in
            try await declareSubscriber("payments.events", keys: ["order.created"], on: connection)
            try await declareSubscriber("audit.events", keys: [], on: connection)
            let channel = try await connection.openChannel()
            try await channel.declareQueue("scratch")

            let routed = try await WarrenCLI.run(["publish", "order.created", #"{"n":1}"#, "--queue", "payments.events"], url: vhost.url)
            #expect(routed.status == 0, "\(routed)")
            #expect(try await depth("payments.events", on: connection) == 1)

            let cancelled = try await WarrenCLI.run(["publish", "order.cancelled", #"{"n":2}"#, "--queue", "payments.events"], url: vhost.url)
            #expect(cancelled.status == 1, "\(cancelled)")
            #expect(cancelled.stderr.contains("bound to warren.events for order.created, not for order.cancelled"), "\(cancelled)")
            let unbound = try await WarrenCLI.run(["publish", "order.created", "--queue", "audit.events"], url: vhost.url)
            #expect(unbound.status == 1, "\(unbound)")
            #expect(unbound.stderr.contains("is not bound to warren.events"), "\(unbound)")
            let noAPI = try await WarrenCLI.run(
                ["publish", "order.created", "--queue", "payments.events", "--management-url", "http://127.0.0.1:1"], url: vhost.url)
            #expect(noAPI.status == 3, "\(noAPI)")
            #expect(noAPI.stderr.contains("nothing was sent"), "\(noAPI)")
            #expect(try await depth("payments.events", on: connection) == 1)
            #expect(try await depth("audit.events", on: connection) == 0)

            // A queue that is no subscriber's (not <service>.events) takes what it is given.
            let scratch = try await WarrenCLI.run(["publish", "anything.at.all", "--queue", "scratch"], url: vhost.url)
            #expect(scratch.status == 0, "\(scratch)")
            #expect(try await depth("scratch", on: connection) == 1)
            await channel.close()
        }
    }

    @Test("an event nobody listens to is reported as unrouted; a missing queue is an error")
    func unroutedAndMissing() async throws {
        try await TestVhost.with { vhost, connection in
            let channel = try await connection.openChannel()
            try await channel.declareExchange(EventPublisher.exchange, type: "topic")
            let unrouted = try await WarrenCLI.run(["publish", "nobody.cares"], url: vhost.url)
            #expect(unrouted.status == 0, "\(unrouted)")
            #expect(unrouted.stderr.contains("no queue is bound for nobody.cares"))
            let missing = try await WarrenCLI.run(["publish", "order.created", "--queue", "nope.events"], url: vhost.url)
            #expect(missing.status == 1, "\(missing)")
            #expect(missing.stderr.contains("there is no queue nope.events"))
        }
    }
}
