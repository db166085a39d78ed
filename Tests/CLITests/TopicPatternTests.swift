// AMQP topic matching as the broker does it, which `replay --to` relies on: pure, no broker.
import Testing
import Warren
import WarrenAMQP

@testable import WarrenCLI

@Suite("topic matching")
struct TopicPatternTests {
    /// (binding key, routing key, whether a topic exchange routes it), as RabbitMQ decides.
    static let table: [(String, String, Bool)] = [
        ("order.created", "order.created", true),
        ("order.created", "order.cancelled", false),
        ("order.created", "order.created.v2", false),
        ("order.created", "order", false),
        ("order.*", "order.created", true),
        ("order.*", "order.cancelled", true),
        ("order.*", "order", false),
        ("order.*", "order.created.v2", false),
        ("order.*", "payment.succeeded", false),
        ("*.succeeded", "payment.succeeded", true),
        ("*.succeeded", "succeeded", false),
        ("*", "order", true),
        ("*", "order.created", false),
        ("*", "", false),
        ("#", "", true),
        ("#", "order", true),
        ("#", "order.created.v2", true),
        ("order.#", "order", true),
        ("order.#", "order.created", true),
        ("order.#", "order.created.v2", true),
        ("order.#", "orders.created", false),
        ("#.created", "order.created", true),
        ("#.created", "created", true),
        ("#.created", "order.created.v2", false),
        ("a.#.z", "a.z", true),
        ("a.#.z", "a.b.c.z", true),
        ("a.#.z", "a.b.c", false),
        ("#.#", "", true),
        ("#.*", "", false),
        ("#.*", "a", true),
        ("*.#.*", "a", false),
        ("*.#.*", "a.b", true),
        ("", "", true),
        ("", "order", false),
        ("a..b", "a..b", true),
        ("a.*.b", "a..b", true),
        ("a.b", "a..b", false),
        ("order.", "order.", true),
        ("order.*", "order.", true),
        // Only whole words are wildcards; anything else compares byte for byte.
        ("order*", "orders", false),
        ("order#", "order", false),
        ("ORDER.created", "order.created", false),
        ("caf\u{E9}", "cafe\u{301}", false),
        ("\u{1B}[2J.*", "\u{1B}[2J.x", true),
    ]

    @Test("a binding key routes exactly the routing keys a topic exchange would", arguments: table)
    func matches(_ bindingKey: String, _ routingKey: String, _ routes: Bool) {
        #expect(TopicPattern.matches(bindingKey, routingKey) == routes)
    }

    @Test("a hostile binding key is decided quickly: no backtracking blow-up")
    func noBlowUp() {
        let key = Array(repeating: "#", count: 200).joined(separator: ".") + ".z"
        let routingKey = Array(repeating: "a", count: 200).joined(separator: ".")
        let started = ContinuousClock.now
        #expect(!TopicPattern.matches(key, routingKey))
        #expect(TopicPattern.matches(key, routingKey + ".z"))
        #expect(ContinuousClock.now - started < .seconds(1))
    }

    @Test("a queue's routes are the keys of its bindings from warren.events, no others")
    func queueRoutes() {
        func binding(_ source: String, _ destination: String, _ key: String, type: String = "queue") -> ManagementAPI.Binding {
            ManagementAPI.Binding(source: source, destination: destination, destination_type: type, routing_key: key)
        }
        let routes = QueueRoutes(queue: "payments.events", bindings: [
            binding("warren.events", "payments.events", "order.created"),
            binding("warren.events", "payments.events", "order.created"),
            binding("warren.events", "orders.events", "payment.*"),
            binding("", "payments.events", "payments.events"),
            binding("amq.topic", "payments.events", "#"),
            binding("warren.events", "payments.events", "#", type: "exchange"),
        ])
        #expect(routes.bindingKeys == ["order.created"])
        #expect(routes.routes("order.created"))
        #expect(!routes.routes("order.cancelled"))
        #expect(!routes.routes("payment.succeeded"))
        #expect(!routes.routes("payments.events"))
        let line = routes.skippedLine(["order.cancelled": 3, "\u{1B}[2J": 1], verb: "skipped")
        #expect(line?.contains("skipped 4 event(s)") == true)
        #expect(line?.contains("order.cancelled (3)") == true)
        #expect(line?.contains(#"\u{1B}[2J (1)"#) == true)
        #expect(routes.skippedLine([:], verb: "skipped") == nil)
    }
}
