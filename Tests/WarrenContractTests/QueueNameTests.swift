import Testing
import WarrenContract

@Suite("Queue names: built and read by one rule")
struct QueueNameTests {
    static let kinds: [QueueName.Kind] = [.rpc, .rpcDeadLetter, .events, .eventsDeadLetter, .eventsRetry(milliseconds: 5_000)]
    static let services = ["users", "a.b", "events", "x", "dlq", "rpc", "ünïcødé-服务", "🦊", String(repeating: "s", count: 10_000)]

    @Test("every name parses back to its service and kind", arguments: services)
    func roundTrip(service: String) {
        for kind in Self.kinds {
            let queue = QueueName(service: service, kind: kind)
            #expect(QueueName(parsing: queue.name) == queue, "\(queue.name.prefix(60))")
        }
    }

    @Test("the spellings the broker has always seen")
    func spellings() {
        #expect(QueueName.rpc("users").name == "users.rpc")
        #expect(QueueName.rpcDeadLetter("users").name == "users.rpc.dlq")
        #expect(QueueName.events("orders").name == "orders.events")
        #expect(QueueName.eventsDeadLetter("orders").name == "orders.events.dlq")
        #expect(QueueName.eventsRetry("orders", delay: .seconds(5)).name == "orders.events.retry.5000ms")
        #expect(QueueName.events(QueueName.eventStoreService).name == "events.events")
        #expect(QueueName.eventExchange == "warren.events")
        #expect(QueueName.serving(operation: "users.get").name == "users.rpc")
        #expect(QueueName.serving(operation: "a.b.c").name == "a.rpc")
    }

    @Test("dead-letter queues know where their messages came from")
    func deadLetters() {
        #expect(QueueName(parsing: "payments.events.dlq")?.deadLetterSource?.name == "payments.events")
        #expect(QueueName(parsing: "payments.rpc.dlq")?.deadLetterSource?.name == "payments.rpc")
        #expect(QueueName(parsing: "payments.rpc.dlq")?.isDeadLetter == true)
        #expect(QueueName(parsing: "payments.rpc")?.isDeadLetter == false)
        #expect(QueueName(parsing: "payments.rpc")?.deadLetterSource == nil)
        #expect(QueueName.rpc("p").deadLetterQueue == .rpcDeadLetter("p"))
        #expect(QueueName.events("p").deadLetterQueue == .eventsDeadLetter("p"))
        #expect(QueueName.eventsRetry("p", delay: .seconds(1)).deadLetterQueue == nil)
        // The event store's own dead letters: `events` is the service, not a suffix.
        #expect(QueueName(parsing: "events.events.dlq") == .eventsDeadLetter("events"))
    }

    @Test(
        "names that are not Warren's are not read as Warren's",
        arguments: [
            "", ".dlq", "dlq", ".rpc", ".events", ".rpc.dlq", ".events.dlq", "rpc", "events", "users", "users.dlq", "users.rpc.dlq.x",
            "users.events.retry.ms", "users.events.retry.5s", "users.events.retry.-5ms", "users.events.retry.5000", ".events.retry.5ms",
            "users.events.retry.99999999999999999999ms", "users.events.retry.５ms", "amq.gen-abc", "users.RPC",
        ])
    func hostile(name: String) {
        #expect(QueueName(parsing: name) == nil)
    }

    @Test("a retry delay too large for 64 bits saturates instead of trapping")
    func saturatingDelay() {
        let queue = QueueName.eventsRetry("p", delay: .seconds(Int64.max))
        #expect(queue.name == "p.events.retry.\(Int64.max)ms")
        #expect(QueueName(parsing: queue.name) == queue)
    }
}
