import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Parks `count` dead letters in `<service>.events.dlq` as EventSubscriber does, ids m0, m1, …
func parkDeadLetters(_ count: Int, service: String, on connection: AMQPConnection) async throws -> [String] {
    // The service's queue, bound for what it parks, as a subscriber declares it.
    try await declareSubscriber("\(service).events", keys: ["order.created"], on: connection)
    let channel = try await connection.openChannel()
    try await channel.declareQueue("\(service).events.dlq")
    let ids = (0..<count).map { "m\($0)" }
    // Without confirms each publish returns once the I/O thread has it, so they leave in order;
    // then wait until the broker holds them all.
    for (index, id) in ids.enumerated() {
        let properties = AMQPProperties(
            contentType: "application/json",
            headers: [WireHeader.error: "payment provider down", WireHeader.attempts: 4, WireHeader.originalRoutingKey: "order.created"],
            deliveryMode: .persistent, messageID: id, type: "order.created")
        try await channel.publish(Data(#"{"n":\#(index)}"#.utf8), routingKey: "\(service).events.dlq", properties: properties)
    }
    for _ in 0..<1500 {
        if try await channel.inspectQueue("\(service).events.dlq").messageCount == count { break }
        try await Task.sleep(for: .milliseconds(20))
    }
    await channel.close()
    return ids
}

/// Takes every message off a queue; their ids in order.
func takeIDs(_ queue: String, on connection: AMQPConnection) async throws -> [String] {
    let count = try await depth(queue, on: connection)
    return try await drain(queue, on: connection, expecting: count).map { $0.properties.messageID ?? "-" }
}

/// Every message id in a queue, in order, leaving the queue as it was (as `dlq show` does).
func ids(in queue: String, on connection: AMQPConnection) async throws -> [String] {
    let channel = try await connection.openChannel()
    let count = Int(try await channel.inspectQueue(queue).messageCount)
    guard count > 0 else { return [] }
    try await channel.setPrefetch(0)
    let messages = try await channel.consume(queue: queue).first(count, within: .seconds(60))
    await channel.close()
    return messages.map { $0.properties.messageID ?? "-" }
}

@Suite("warren dlq", .timeLimit(.minutes(3)))
struct DLQTests {
    @Test("list shows every dead-letter queue with its count; --json parses")
    func list() async throws {
        try await TestVhost.with { vhost, connection in
            _ = try await parkDeadLetters(3, service: "payments", on: connection)
            let channel = try await connection.openChannel()
            try await channel.declareQueue("orders.rpc.dlq")
            try await channel.declareQueue("orders.rpc")
            let result = try await WarrenCLI.run(["dlq", "list", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let rows = try #require(result.json as? [[String: Any]], "\(result)")
            #expect(rows.map { $0["queue"] as? String } == ["orders.rpc.dlq", "payments.events.dlq"])
            #expect(rows.map { $0["messages"] as? Int } == [0, 3])
            #expect(rows.map { $0["service"] as? String } == ["orders", "payments"])
            let text = try await WarrenCLI.run(["dlq", "list"], url: vhost.url)
            #expect(text.stdout.contains("payments.events.dlq"), "\(text)")
        }
    }

    @Test("show leaves the queue as it was: same messages, same order")
    func showLeavesQueue() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(30, service: "payments", on: connection)
            let result = try await WarrenCLI.run(["dlq", "show", "payments", "--limit", "5", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let queues = try #require(result.json as? [[String: Any]], "\(result)")
            let shown = try #require(queues.first?["shown"] as? [[String: Any]])
            #expect(queues.first?["messages"] as? Int == 30)
            #expect(shown.map { ($0["properties"] as? [String: Any])?["message_id"] as? String } == Array(parked.prefix(5)))
            #expect((shown.first?["headers"] as? [String: Any])?["x-error"] as? String == "payment provider down")
            let text = try await WarrenCLI.run(["dlq", "show", "payments", "--limit", "100"], url: vhost.url)
            #expect(text.status == 0, "\(text)")
            #expect(text.stdout.contains("payments.events.dlq: 30 message(s)"))
            #expect(text.stdout.contains("error: payment provider down"))
            #expect(try await takeIDs("payments.events.dlq", on: connection) == parked)
        }
    }

    @Test("requeue --all moves every message back to the service queue, in order, verdict headers dropped")
    func requeueAll() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(200, service: "payments", on: connection)
            let result = try await WarrenCLI.run(["dlq", "requeue", "payments", "--all"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            #expect(result.stdout.contains("requeued 200 message(s) from payments.events.dlq to payments.events"))
            #expect(try await depth("payments.events.dlq", on: connection) == 0)
            let back = try await drain("payments.events", on: connection, expecting: 200)
            #expect(back.map { $0.properties.messageID } == parked)
            let headers = back.first?.properties.headers ?? [:]
            #expect(headers[WireHeader.originalRoutingKey] == "order.created")
            #expect(headers[WireHeader.error] == nil)
            #expect(headers[WireHeader.attempts] == nil)
        }
    }

    @Test("requeue --id moves only those; the rest keep their places; an unknown id exits 1")
    func requeueByID() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(20, service: "payments", on: connection)
            let result = try await WarrenCLI.run(["dlq", "requeue", "payments.events.dlq", "--id", "m3", "--id", "m7", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            #expect(try await takeIDs("payments.events", on: connection) == ["m3", "m7"])
            let unknown = try await WarrenCLI.run(["dlq", "requeue", "payments", "--id", "m99"], url: vhost.url)
            #expect(unknown.status == 1, "\(unknown)")
            #expect(unknown.stderr.contains("no dead letter with id m99"))
            let neither = try await WarrenCLI.run(["dlq", "requeue", "payments"], url: vhost.url)
            #expect(neither.status == 2)
            #expect(try await takeIDs("payments.events.dlq", on: connection) == parked.filter { $0 != "m3" && $0 != "m7" })
        }
    }

    @Test("requeue sends back only the events the service's bindings route; the others stay in place, exit 1; no management API, nothing moves")
    func requeueOnlyRouted() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(3, service: "payments", on: connection)
            // Two that payments never subscribed to, put straight into its queue and parked there
            // (the subscriber writes the type it decided as x-original-routing-key).
            let channel = try await connection.openChannel()
            for id in ["c0", "c1"] {
                let properties = AMQPProperties(
                    headers: [WireHeader.error: "not subscribed", WireHeader.originalRoutingKey: "order.cancelled"],
                    messageID: id, type: "order.cancelled")
                try await channel.publish(Data("{}".utf8), routingKey: "payments.events.dlq", properties: properties)
            }
            var waited = 0
            while try await channel.inspectQueue("payments.events.dlq").messageCount < 5, waited < 500 {
                try await Task.sleep(for: .milliseconds(10))
                waited += 1
            }

            let noAPI = try await WarrenCLI.run(["dlq", "requeue", "payments", "--all", "--management-url", "http://127.0.0.1:1"], url: vhost.url)
            #expect(noAPI.status == 3, "\(noAPI)")
            #expect(noAPI.stderr.contains("nothing was requeued"), "\(noAPI)")
            #expect(try await depth("payments.events", on: connection) == 0)

            let result = try await WarrenCLI.run(["dlq", "requeue", "payments", "--all", "--json"], url: vhost.url)
            #expect(result.status == 1, "\(result)")
            #expect(result.stderr.contains("kept back 2 event(s) that warren.events does not route to payments.events (bound for order.created): order.cancelled (2)"), "\(result)")
            let moved = try #require((result.json as? [String: Any])?["requeued"] as? [[String: Any]], "\(result)")
            #expect(moved.first?["messages"] as? Int == 3)
            #expect(moved.first?["keptTypes"] as? [String: Int] == ["order.cancelled": 2])
            #expect(try await takeIDs("payments.events", on: connection) == parked)
            #expect(try await takeIDs("payments.events.dlq", on: connection) == ["c0", "c1"])
            await channel.close()
        }
    }

    @Test("requeue killed halfway loses nothing; running it again finishes the job")
    func requeueInterrupted() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(20_000, service: "payments", on: connection)
            let requeue = try WarrenCLI(["dlq", "requeue", "payments", "--all"], url: vhost.url)
            var moved = 0
            for _ in 0..<3000 where requeue.process.isRunning {
                moved = try await depth("payments.events", on: connection)
                if moved > 500 { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            kill(requeue.process.processIdentifier, SIGKILL)
            let killed = try await requeue.finish()
            #expect(killed.status == SIGKILL || killed.status == 0)
            // Nothing lost: every id is in one of the two queues (a few may be in both).
            try await Task.sleep(for: .milliseconds(500))  // the broker requeues the dead process's messages
            let inDLQ = try await ids(in: "payments.events.dlq", on: connection)
            let inQueue = try await ids(in: "payments.events", on: connection)
            #expect(Set(inDLQ).union(inQueue) == Set(parked))
            print("requeue killed after \(inQueue.count) of \(parked.count) were moved (\(Set(inDLQ).intersection(inQueue).count) in both)")

            let again = try await WarrenCLI.run(["dlq", "requeue", "payments", "--all"], url: vhost.url)
            #expect(again.status == 0, "\(again)")
            #expect(try await depth("payments.events.dlq", on: connection) == 0)
            #expect(Set(try await ids(in: "payments.events", on: connection)) == Set(parked))
        }
    }

    @Test("a service queue's name means its dead-letter queue, and stderr says so; a retry queue is a usage error")
    func serviceQueueMeansItsDeadLetters() async throws {
        try await TestVhost.with { vhost, connection in
            let parked = try await parkDeadLetters(3, service: "payments", on: connection)
            let channel = try await connection.openChannel()
            try await channel.declareQueue("payments.rpc.dlq")
            try await channel.publish(Data("{}".utf8), routingKey: "payments.rpc.dlq", properties: AMQPProperties(messageID: "r0"))
            for _ in 0..<500 where try await channel.inspectQueue("payments.rpc.dlq").messageCount < 1 {
                try await Task.sleep(for: .milliseconds(10))
            }
            await channel.close()

            let shown = try await WarrenCLI.run(["dlq", "show", "payments.events", "--json"], url: vhost.url)
            #expect(shown.status == 0, "\(shown)")
            #expect(shown.stderr == "showing 'payments.events.dlq', the dead-letter queue of 'payments.events'\n", "\(shown)")
            let queues = try #require(shown.json as? [[String: Any]], "\(shown)")
            #expect(queues.map { $0["queue"] as? String } == ["payments.events.dlq"])
            #expect(queues.first?["messages"] as? Int == 3)

            // Not the service `payments.rpc` (whose queues would be payments.rpc.events.dlq and payments.rpc.rpc.dlq).
            let text = try await WarrenCLI.run(["dlq", "show", "payments.rpc"], url: vhost.url)
            #expect(text.status == 0, "\(text)")
            #expect(text.stderr.contains("showing 'payments.rpc.dlq', the dead-letter queue of 'payments.rpc'"), "\(text)")
            #expect(text.stdout.hasPrefix("payments.rpc.dlq: 1 message(s)"), "\(text)")
            #expect(!text.stdout.contains("payments.events.dlq"), "\(text)")

            let requeued = try await WarrenCLI.run(["dlq", "requeue", "payments.events", "--id", "m1"], url: vhost.url)
            #expect(requeued.status == 0, "\(requeued)")
            #expect(requeued.stderr.contains("requeueing from 'payments.events.dlq', the dead-letter queue of 'payments.events'"), "\(requeued)")
            #expect(try await takeIDs("payments.events", on: connection) == ["m1"])

            let purged = try await WarrenCLI.run(["dlq", "purge", "payments.rpc", "--yes"], url: vhost.url)
            #expect(purged.status == 0, "\(purged)")
            #expect(purged.stderr.contains("purging 'payments.rpc.dlq', the dead-letter queue of 'payments.rpc'"), "\(purged)")
            #expect(try await depth("payments.rpc.dlq", on: connection) == 0)
            #expect(try await ids(in: "payments.events.dlq", on: connection) == parked.filter { $0 != "m1" })

            let missing = try await WarrenCLI.run(["dlq", "show", "orders.rpc"], url: vhost.url)
            #expect(missing.status == 1, "\(missing)")
            #expect(missing.stderr.contains("there is no dead-letter queue 'orders.rpc.dlq':"), "\(missing)")

            let retry = try await WarrenCLI.run(["dlq", "show", "payments.events.retry.5000ms"], url: vhost.url)
            #expect(retry.status == 2, "\(retry)")
            #expect(retry.stderr.contains("retry queue") && retry.stderr.contains("payments.events.dlq"), "\(retry)")
        }
    }

    @Test("purge asks first: without a terminal it needs --yes")
    func purge() async throws {
        try await TestVhost.with { vhost, connection in
            _ = try await parkDeadLetters(4, service: "payments", on: connection)
            let refused = try await WarrenCLI.run(["dlq", "purge", "payments"], url: vhost.url)
            #expect(refused.status == 2, "\(refused)")
            #expect(refused.stderr.contains("pass --yes"))
            #expect(try await depth("payments.events.dlq", on: connection) == 4)
            let purged = try await WarrenCLI.run(["dlq", "purge", "payments", "--yes", "--json"], url: vhost.url)
            #expect(purged.status == 0, "\(purged)")
            #expect((purged.json as? [[String: Any]])?.first?["purged"] as? Int == 4)
            #expect(try await depth("payments.events.dlq", on: connection) == 0)
            let unknown = try await WarrenCLI.run(["dlq", "purge", "nobody", "--yes"], url: vhost.url)
            #expect(unknown.status == 1)
            #expect(unknown.stderr.contains("warren dlq list"))
        }
    }

    /// Names that end in `.dlq` but are not `<service>.events.dlq` / `<service>.rpc.dlq`: each is
    /// a dead-letter queue's own name, never a service whose dead-letter queues it would extend to.
    static let dlqSuffixed = ["users.rpc.dlq.dlq", "users.dlq", "payments.events.retry.5000ms.dlq", "a.events.dlq.dlq", "x.rpc.dlq.events.dlq.dlq"]

    @Test("a name that ends in .dlq is taken exactly as typed, never extended to <name>.rpc.dlq or <name>.events.dlq", arguments: dlqSuffixed)
    func dlqSuffixTakenExactly(_ name: String) async throws {
        try await TestVhost.with { vhost, connection in
            let decoys = ["\(name).rpc.dlq", "\(name).events.dlq"]
            for decoy in decoys { try await putOne(in: decoy, on: connection) }
            for command in [["purge", name, "--yes"], ["show", name], ["requeue", name, "--all"]] {
                let result = try await WarrenCLI.run(["dlq"] + command, url: vhost.url)
                #expect(result.status == 1, "\(command): \(result)")
                #expect(result.stderr.contains("there is no dead-letter queue '\(name)':"), "\(command): \(result)")
                #expect(!decoys.contains { result.stderr.contains($0) }, "\(command): \(result)")
            }
            for decoy in decoys { #expect(try await depth(decoy, on: connection) == 1, "\(decoy)") }

            // When it exists, it is the one purged; it has no service queue to requeue to.
            try await putOne(in: name, on: connection)
            let requeue = try await WarrenCLI.run(["dlq", "requeue", name, "--all"], url: vhost.url)
            #expect(requeue.status == 1, "\(requeue)")
            #expect(requeue.stderr.contains("'\(name)' is not named <service>.events.dlq or <service>.rpc.dlq"), "\(requeue)")
            #expect(try await depth(name, on: connection) == 1)
            let purged = try await WarrenCLI.run(["dlq", "purge", name, "--yes", "--json"], url: vhost.url)
            #expect(purged.status == 0, "\(purged)")
            #expect((purged.json as? [[String: Any]])?.map { $0["queue"] as? String } == [name], "\(purged)")
            #expect(try await depth(name, on: connection) == 0)
            for decoy in decoys { #expect(try await depth(decoy, on: connection) == 1, "\(decoy)") }
        }
    }
}

extension DLQTests {
    @Test("dlq's lines on stderr quote queue names: ' users.rpc' is not 'users.rpc'")
    func namesQuoted() async throws {
        try await TestVhost.with { vhost, connection in
            try await putOne(in: " users.rpc.dlq", on: connection)
            let shown = try await WarrenCLI.run(["dlq", "show", " users.rpc"], url: vhost.url)
            #expect(shown.status == 0, "\(shown)")
            #expect(shown.stderr.contains("showing ' users.rpc.dlq', the dead-letter queue of ' users.rpc'"), "\(shown)")
            let missing = try await WarrenCLI.run(["dlq", "purge", "users.rpc ", "--yes"], url: vhost.url)
            #expect(missing.status == 1, "\(missing)")
            #expect(missing.stderr.contains("there is no dead-letter queue 'users.rpc .events.dlq' or 'users.rpc .rpc.dlq'"), "\(missing)")
            let asked = try await WarrenCLI.run(["dlq", "purge", " users.rpc"], url: vhost.url)
            #expect(asked.status == 2, "\(asked)")
            #expect(asked.stderr.contains("deletes 1 in ' users.rpc.dlq' for good"), "\(asked)")
            #expect(try await depth(" users.rpc.dlq", on: connection) == 1)
        }
    }
}

/// Declares `queue` and puts one message in it, waiting until the broker holds it.
func putOne(in queue: String, on connection: AMQPConnection) async throws {
    let channel = try await connection.openChannel()
    try await channel.declareQueue(queue)
    let before = Int(try await channel.inspectQueue(queue).messageCount)
    try await channel.publish(Data("{}".utf8), routingKey: queue, properties: AMQPProperties(messageID: "one-\(queue)"))
    for _ in 0..<500 where Int(try await channel.inspectQueue(queue).messageCount) == before {
        try await Task.sleep(for: .milliseconds(20))
    }
    await channel.close()
}
