import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// A replay filter and the stored events it must select.
struct ReplayCase: Sendable, CustomTestStringConvertible {
    let name: String
    let arguments: @Sendable (FakeEventStore) -> [String]
    let selects: @Sendable (FakeEventStore, Int) -> Bool

    var testDescription: String { name }

    static let all: [ReplayCase] = [
        ReplayCase(name: "--type 'order.*'", arguments: { _ in ["--type", "order.*"] }, selects: { store, i in store.events[i].type.hasPrefix("order.") }),
        ReplayCase(name: "--since and --until in ISO 8601", arguments: { store in
            ["--since", store.dates[50].formatted(.iso8601), "--until", store.dates[100].formatted(.iso8601)]
        }, selects: { _, i in (50..<100).contains(i) }),
        ReplayCase(name: "--since 30m (relative)", arguments: { _ in ["--since", "30m"] }, selects: { store, i in i >= store.events.count - 30 }),
        ReplayCase(name: "--aggregate", arguments: { _ in ["--aggregate", "aggregate-3"] }, selects: { store, i in store.events[i].aggregateId == "aggregate-3" }),
        ReplayCase(name: "--correlation", arguments: { _ in ["--correlation", "flow-5"] }, selects: { store, i in store.events[i].correlationId == "flow-5" }),
        ReplayCase(name: "--type with --limit", arguments: { _ in ["--type", "payment.*", "--limit", "7"] }, selects: { store, i in
            store.events[i].type.hasPrefix("payment.") && store.events[...i].filter { $0.type.hasPrefix("payment.") }.count <= 7
        }),
    ]
}

/// Declares `queue` bound to warren.events with `keys`, as a subscriber declares its
/// `<service>.events`: `replay --to` sends it only what these bindings route.
func declareSubscriber(_ queue: String, keys: [String], on connection: AMQPConnection) async throws {
    let channel = try await connection.openChannel()
    try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
    try await channel.declareQueue(queue)
    for key in keys { try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: key) }
    await channel.close()
}

@Suite("warren replay", .timeLimit(.minutes(3)))
struct ReplayTests {
    @Test("replay with each filter to a service queue delivers exactly the matching events, in order", arguments: ReplayCase.all)
    func filterToServiceQueue(_ filter: ReplayCase) async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 300, connection: connection)
            try await declareSubscriber("projection.events", keys: ["#"], on: connection)
            // Small pages, so paging and the look-ahead are exercised.
            let result = try await WarrenCLI.run(["replay", "--to", "projection", "--page-size", "16", "--json"] + filter.arguments(store), url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let selected = store.events.indices.filter { filter.selects(store, $0) }
            let expected = selected.map { store.events[$0] }
            #expect(!expected.isEmpty)
            let summary = try #require(result.json as? [String: Any], "\(result)")
            #expect(summary["replayed"] as? Int == expected.count)
            #expect(try await depth("projection.events", on: connection) == expected.count)
            let received = try await drain("projection.events", on: connection, expecting: expected.count)
            #expect(received.map { $0.properties.messageID } == expected.map(\.id))
            #expect(received.map { $0.properties.type } == expected.map(\.type))
            let replayID = try #require(summary["correlationId"] as? String)
            for (delivery, index) in zip(received, selected) {
                let event = store.events[index]
                let headers = delivery.properties.headers ?? [:]
                // The AMQP timestamp carries whole seconds of the stored time.
                #expect(delivery.properties.timestamp?.timeIntervalSince1970 == store.dates[index].timeIntervalSince1970.rounded(.down))
                #expect(headers[WireHeader.replayed] == .bool(true))
                #expect(headers[WireHeader.correlationID] == .string(replayID))
                #expect(headers["x-original-correlation-id"] == .string(event.correlationId ?? ""))
                #expect(headers[WireHeader.aggregateID] == .string(event.aggregateId ?? ""))
                #expect(delivery.properties.deliveryMode == .persistent)
                #expect(try JSONDecoder().decode(FakeEvent.Body.self, from: delivery.body) == event.body)
            }
            await store.stop()
        }
    }

    @Test("from the real event store: what `warren publish` recorded comes back to one queue, filtered and in order")
    func fromRealEventStore() async throws {
        try await TestVhost.with { vhost, connection in
            let data = try TemporaryDirectory()
            defer { data.remove() }
            let store = try ServiceProcess("event-store", environment: ["AMQP_URL": vhost.url, "DATA_DIR": data.path])
            try await store.waitUntilReady()
            let orders = (0..<20).map { #"{"n":\#($0)}"# }.joined(separator: "\n")
            #expect(try await WarrenCLI.run(["publish", "order.created", "--lines"], url: vhost.url, stdin: orders).status == 0)
            #expect(try await WarrenCLI.run(["publish", "user.registered", #"{"n":99}"#], url: vhost.url).status == 0)

            var counted = 0
            for _ in 0..<100 where counted < 21 {
                let dryRun = try await WarrenCLI.run(["replay", "--dry-run", "--json"], url: vhost.url)
                counted = (dryRun.json as? [String: Any])?["count"] as? Int ?? 0
                if counted < 21 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(counted == 21, "the event store did not record the 21 events")

            try await declareSubscriber("projection.events", keys: ["order.*"], on: connection)
            let result = try await WarrenCLI.run(["replay", "--type", "order.*", "--to", "projection", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let received = try await drain("projection.events", on: connection, expecting: 20)
            #expect(received.map { String(decoding: $0.body, as: UTF8.self) } == (0..<20).map { #"{"n":\#($0)}"# })
            #expect(received.allSatisfy { $0.properties.type == "order.created" && $0.properties.headers?[WireHeader.replayed] == .bool(true) })
            await store.stop()
        }
    }

    @Test("without --to, events go to warren.events under their type and reach every subscriber")
    func toExchange() async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 100, connection: connection)
            let channel = try await connection.openChannel()
            try await channel.declareExchange(EventPublisher.exchange, type: "topic")
            try await channel.declareQueue("payments.events")
            try await channel.bindQueue("payments.events", exchange: EventPublisher.exchange, routingKey: "order.*")
            let result = try await WarrenCLI.run(["replay", "--type", "order.created"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("replayed 25 event(s) to exchange warren.events"))
            let expected = store.events.filter { $0.type == "order.created" }
            let received = try await drain("payments.events", on: connection, expecting: expected.count)
            #expect(received.map { $0.properties.messageID } == expected.map(\.id))
            #expect(received.allSatisfy { $0.routingKey == "order.created" })
            await store.stop()
        }
    }

    @Test("--dry-run counts and samples, and sends nothing")
    func dryRun() async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 120, connection: connection)
            try await declareSubscriber("projection.events", keys: ["#"], on: connection)
            let result = try await WarrenCLI.run(["replay", "--to", "projection", "--type", "order.*", "--dry-run", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let summary = try #require(result.json as? [String: Any], "\(result)")
            #expect(summary["count"] as? Int == 60)
            #expect((summary["sample"] as? [Any])?.count == 5)
            let text = try await WarrenCLI.run(["replay", "--to", "projection", "--dry-run"], url: vhost.url)
            #expect(text.stdout.contains("would replay 120 event(s)"), "\(text)")
            #expect(try await depth("projection.events", on: connection) == 0)
            await store.stop()
        }
    }

    @Test("--rate paces the replay, and progress shows confirms as they come")
    func rate() async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 60, connection: connection)
            try await declareSubscriber("projection.events", keys: ["#"], on: connection)
            let result = try await WarrenCLI.run(["replay", "--to", "projection", "--rate", "20", "--limit", "60", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let summary = try #require(result.json as? [String: Any], "\(result)")
            // 60 events at 20/s take at least ~3 s (the first leaves at once).
            #expect((summary["seconds"] as? Double ?? 0) >= 2.8)
            #expect(try await depth("projection.events", on: connection) == 60)
            // Off a terminal a progress line comes every 2 s: the one in the middle counts the
            // events confirmed so far, not only a full window of them.
            #expect(Self.progressCounts(result.stderr).contains { (2..<60).contains($0) }, "\(result)")
            await store.stop()
        }
    }

    /// N of each "replayed N/total" progress line.
    static func progressCounts(_ text: String) -> [Int] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("replayed "), let count = line.dropFirst("replayed ".count).split(separator: "/").first else { return nil }
            return Int(count)
        }
    }

    @Test("a missing target queue or event store is a clear error, exit 1")
    func missingPieces() async throws {
        try await TestVhost.with { vhost, connection in
            let noQueue = try await WarrenCLI.run(["replay", "--to", "nobody"], url: vhost.url)
            #expect(noQueue.status == 1)
            #expect(noQueue.stderr.contains("there is no queue nobody.events"), "\(noQueue)")
            try await declareSubscriber("projection.events", keys: ["#"], on: connection)
            let noStore = try await WarrenCLI.run(["replay", "--to", "projection"], url: vhost.url)
            #expect(noStore.status == 1)
            #expect(noStore.stderr.contains("event store is unavailable"), "\(noStore)")
            let badTime = try await WarrenCLI.run(["replay", "--since", "yesterday"], url: vhost.url)
            #expect(badTime.status == 2)
        }
    }
}

/// Bindings of a service's queue, and the types of FakeEventStore's events they route.
struct RoutingCase: Sendable, CustomTestStringConvertible {
    let keys: [String]
    let routed: Set<String>

    var testDescription: String { keys.joined(separator: " + ") }

    static let all: [RoutingCase] = [
        RoutingCase(keys: ["order.created"], routed: ["order.created"]),
        RoutingCase(keys: ["order.created", "order.cancelled"], routed: ["order.created"]),
        RoutingCase(keys: ["order.#", "*.succeeded"], routed: ["order.created", "order.confirmed", "payment.succeeded"]),
        RoutingCase(keys: ["#.registered", "payment.*.x"], routed: ["user.registered"]),
        RoutingCase(keys: ["#"], routed: Set(FakeEventStore.types)),
    ]
}

@Suite("warren replay --to sends only what the queue's bindings route", .timeLimit(.minutes(3)))
struct ReplayRoutingTests {
    @Test("the README's example: --type 'order.*' --to payments sends payments only order.created; the rest is skipped and counted")
    func readmeExample() async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 120, connection: connection)
            // What payment-service binds (Sources/PaymentService): order.created only.
            try await declareSubscriber("payments.events", keys: ["order.created"], on: connection)

            let dryRun = try await WarrenCLI.run(["replay", "--type", "order.*", "--to", "payments", "--dry-run"], url: vhost.url)
            #expect(dryRun.status == 0, "\(dryRun)")
            #expect(dryRun.stdout.contains("would replay 30 event(s) to queue payments.events"), "\(dryRun)")
            #expect(dryRun.stdout.contains("would skip 30 event(s)"), "\(dryRun)")
            #expect(dryRun.stdout.contains("order.confirmed (30)"), "\(dryRun)")

            let result = try await WarrenCLI.run(["replay", "--type", "order.*", "--to", "payments", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let summary = try #require(result.json as? [String: Any], "\(result)")
            #expect(summary["replayed"] as? Int == 30)
            #expect(summary["skipped"] as? Int == 30)
            #expect(summary["skippedTypes"] as? [String: Int] == ["order.confirmed": 30])
            let expected = store.events.filter { $0.type == "order.created" }
            #expect(try await depth("payments.events", on: connection) == expected.count)
            let received = try await drain("payments.events", on: connection, expecting: expected.count)
            #expect(received.map { $0.properties.messageID } == expected.map(\.id))
            #expect(received.allSatisfy { $0.properties.type == "order.created" })

            let text = try await WarrenCLI.run(["replay", "--type", "order.*", "--to", "payments", "--limit", "5"], url: vhost.url)
            #expect(text.status == 0, "\(text)")
            // --limit counts what is sent, not what is skipped on the way.
            #expect(text.stdout.contains("replayed 5 event(s) to queue payments.events"), "\(text)")
            #expect(text.stdout.contains("skipped 4 event(s) that warren.events does not route to payments.events (bound for order.created): order.confirmed (4)"), "\(text)")
            _ = try await drain("payments.events", on: connection, expecting: 5)
            await store.stop()
        }
    }

    @Test("whatever the bindings, exactly the events a topic exchange would route arrive, in order", arguments: RoutingCase.all)
    func bindings(_ example: RoutingCase) async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 80, connection: connection)
            try await declareSubscriber("projection.events", keys: example.keys, on: connection)
            let result = try await WarrenCLI.run(["replay", "--to", "projection", "--page-size", "7", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let expected = store.events.filter { example.routed.contains($0.type) }
            let summary = try #require(result.json as? [String: Any], "\(result)")
            #expect(summary["replayed"] as? Int == expected.count)
            #expect(summary["skipped"] as? Int == store.events.count - expected.count)
            let received = try await drain("projection.events", on: connection, expecting: expected.count)
            #expect(received.map { $0.properties.messageID } == expected.map(\.id))
            #expect(try await depth("projection.events", on: connection) == 0)
            await store.stop()
        }
    }

    @Test("without the management API, or for a queue bound to nothing, replay --to refuses and sends nothing")
    func refuses() async throws {
        try await TestVhost.with { vhost, connection in
            let store = try await FakeEventStore(count: 40, connection: connection)
            try await declareSubscriber("payments.events", keys: [], on: connection)
            let unbound = try await WarrenCLI.run(["replay", "--to", "payments"], url: vhost.url)
            #expect(unbound.status == 1, "\(unbound)")
            #expect(unbound.stderr.contains("queue payments.events is not bound to warren.events"), "\(unbound)")
            #expect(unbound.stderr.contains("nothing was sent"), "\(unbound)")

            let channel = try await connection.openChannel()
            try await channel.bindQueue("payments.events", exchange: EventPublisher.exchange, routingKey: "order.created")
            for arguments in [["--management-url", "http://127.0.0.1:1"], ["--dry-run", "--management-url", "http://127.0.0.1:1"]] {
                let unreachable = try await WarrenCLI.run(["replay", "--to", "payments"] + arguments, url: vhost.url)
                #expect(unreachable.status == 3, "\(unreachable)")
                #expect(unreachable.stderr.contains("cannot reach RabbitMQ's management API"), "\(unreachable)")
                #expect(unreachable.stderr.contains("nothing was sent"), "\(unreachable)")
                #expect(unreachable.stdout.isEmpty, "\(unreachable)")
            }
            #expect(try await depth("payments.events", on: connection) == 0)
            await channel.close()
            await store.stop()
        }
    }
}

@Suite("warren replay throughput", .timeLimit(.minutes(5)))
struct ReplayThroughputTests {
    @Test("100,000 events replayed with confirms, in order; the rate is reported")
    func hundredThousand() async throws {
        try await TestVhost.with { vhost, connection in
            let count = 100_000
            let store = try await FakeEventStore(count: count, connection: connection)
            try await declareSubscriber("bulk.events", keys: ["#"], on: connection)
            let result = try await WarrenCLI.run(["replay", "--to", "bulk", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let summary = try #require(result.json as? [String: Any], "\(result)")
            #expect(summary["replayed"] as? Int == count)
            print("replay throughput: \(summary["eventsPerSecond"] ?? "?") events/s for \(count) events (\(summary["seconds"] ?? "?") s)")
            #expect(try await depth("bulk.events", on: connection) == count)
            let received = try await drain("bulk.events", on: connection, expecting: count, within: .seconds(120))
            #expect(received.count == count)
            #expect(received.map { $0.properties.messageID } == store.events.map(\.id))
            await store.stop()
        }
    }
}
