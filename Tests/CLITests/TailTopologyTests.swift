import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("warren events tail and topology", .timeLimit(.minutes(2)))
struct TailTopologyTests {
    @Test("tail prints the matching events as they come, --json one document per line; Ctrl-C exits 0")
    func tail() async throws {
        try await TestVhost.with { vhost, connection in
            let json = try WarrenCLI(["events", "tail", "--type", "order.*", "--json"], url: vhost.url)
            let text = try WarrenCLI(["events", "tail"], url: vhost.url)
            try await json.waitFor("listening on warren.events for order.*")
            try await text.waitFor("listening on warren.events for #")
            let publisher = try await EventPublisher.start(connection: connection)
            var published: [String] = []
            for type in ["order.created", "payment.succeeded", "order.confirmed", "order.cancelled"] {
                published.append(try await publisher.publish(type, ["note": type], aggregateID: "o1").messageID)
            }
            try await json.waitFor(published[3], inStdout: true)
            try await text.waitFor(published[3], inStdout: true)
            json.process.interrupt()
            text.process.interrupt()
            let jsonResult = try await json.finish()
            let textResult = try await text.finish()
            #expect(jsonResult.status == 0, "\(jsonResult)")
            #expect(textResult.status == 0, "\(textResult)")

            let documents = jsonResult.stdout.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            #expect(documents.count == 3, "\(jsonResult)")
            #expect(documents.map { ($0["properties"] as? [String: Any])?["message_id"] as? String } == [published[0], published[2], published[3]])
            #expect(documents.map { ($0["body"] as? [String: String])?["note"] } == ["order.created", "order.confirmed", "order.cancelled"])
            #expect((documents.first?["headers"] as? [String: Any])?["x-aggregate-id"] as? String == "o1")

            let lines = textResult.stdout.split(separator: "\n")
            #expect(lines.count == 4, "\(textResult)")
            #expect(lines.first?.contains("order.created") == true)
            #expect(lines.first?.contains(published[0]) == true)
            #expect(lines.first?.contains(#"{"note":"order.created"}"#) == true)
        }
    }

    @Test("output to a reader that has gone (warren topology | head -1) ends warren as SIGPIPE does, never with a trap")
    func readerGone() async throws {
        try await TestVhost.with { vhost, connection in
            let channel = try await connection.openChannel()
            for index in 0..<20 { try await channel.declareQueue("scratch-\(index)") }
            var ends: [Int32] = [0, 0]
            try #require(pipe(&ends) == 0)
            close(ends[0])  // the reader is gone before warren writes
            defer { close(ends[1]) }
            var environment = ProcessInfo.processInfo.environment
            environment["AMQP_URL"] = vhost.url
            let argv: [UnsafeMutablePointer<CChar>?] = [strdup(WarrenCLI.binary.path), strdup("topology"), nil]
            let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { (argv + envp).forEach { free($0) } }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, ends[1], 1)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            var pid: pid_t = 0
            try #require(posix_spawn(&pid, WarrenCLI.binary.path, &actions, nil, argv, envp) == 0)
            var status: Int32 = 0
            let deadline = ContinuousClock.now + .seconds(60)
            while waitpid(pid, &status, WNOHANG) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if ContinuousClock.now >= deadline { kill(pid, SIGKILL) }
            #expect(status & 0x7F == SIGPIPE, "status \(status): signal \(status & 0x7F), exit \((status >> 8) & 0xFF)")
        }
    }

    @Test("topology shows each service's queues with consumers, depths, bindings and dead letters")
    func topology() async throws {
        try await TestVhost.with { vhost, connection in
            _ = try await parkDeadLetters(2, service: "payments", on: connection)
            let channel = try await connection.openChannel()
            try await channel.declareExchange(EventPublisher.exchange, type: "topic")
            try await channel.bindQueue("payments.events", exchange: EventPublisher.exchange, routingKey: "order.created")
            try await channel.bindQueue("payments.events", exchange: EventPublisher.exchange, routingKey: "order.cancelled")
            try await channel.declareQueue("payments.events.retry.1000ms")
            try await channel.declareQueue("scratch")
            var handlers = RPCHandlers()
            handlers.on("payments.get", [String: String].self) { request, _ in request }
            let service = try await InProcessService("payments", handlers: handlers, connection: connection)

            let result = try await WarrenCLI.run(["topology", "--json"], url: vhost.url)
            #expect(result.status == 0, "\(result)")
            let document = try #require(result.json as? [String: Any], "\(result)")
            let services = try #require(document["services"] as? [[String: Any]])
            #expect(services.map { $0["name"] as? String } == ["payments"])
            let payments = try #require(services.first)
            #expect(payments["instances"] as? Int == 1)
            #expect(payments["deadLetters"] as? Int == 2)
            let queues = try #require(payments["queues"] as? [[String: Any]])
            let byName = Dictionary(uniqueKeysWithValues: queues.compactMap { queue in (queue["name"] as? String).map { ($0, queue) } })
            #expect(Set(byName.keys) == ["payments.rpc", "payments.rpc.dlq", "payments.events", "payments.events.retry.1000ms", "payments.events.dlq"])
            #expect(byName["payments.events"]?["bindings"] as? [String] == ["order.cancelled", "order.created"])
            #expect(byName["payments.events.retry.1000ms"]?["role"] as? String == "retry")
            #expect(byName["payments.rpc"]?["consumers"] as? Int == 1)
            #expect(byName["payments.events.dlq"]?["messages"] as? Int == 2)
            #expect((document["otherQueues"] as? [[String: Any]])?.map { $0["name"] as? String } == ["scratch"])

            let text = try await WarrenCLI.run(["topology"], url: vhost.url)
            #expect(text.status == 0, "\(text)")
            #expect(text.stdout.contains("payments\n"))
            #expect(text.stdout.contains("warren.events: order.cancelled, order.created"))
            await service.stop()
        }
    }
}
