import Foundation
import Testing
import Warren
import WarrenTestSupport
import Yams

/// schemas/asyncapi.yaml against what the code declares on the broker, without a broker: every
/// queue, exchange and routing key a service declares, binds or publishes to is in the contract.
@Suite("AsyncAPI contract against the code")
struct AsyncAPIContractTests {
    /// The broker names the code declares, gathered in this one function: from the service
    /// definitions each service's name (`ServiceProcess.run(name:)`), its operations
    /// (`handlers.on…("…")`), its subscription (`Subscription([...])`) and the event types its
    /// stores put in the outbox or its command line says it publishes; the queues of a name from
    /// the contract's rules (`QueueName`: `<service>.rpc`, `.rpc.dlq`, `.events`, `.events.dlq`,
    /// `.events.retry.<ms>ms` with the default delays; the event store's `events.events`).
    static func declaredNames() throws -> (
        queues: Set<String>, exchanges: Set<String>, routingKeys: Set<String>, bindings: [String: Set<String>], operations: Set<String>
    ) {
        let sources = Schemas.directory.appendingPathComponent("../Sources").standardized
        func matches(_ pattern: String, in text: String) -> [String] {
            let regex = try? NSRegularExpression(pattern: pattern)
            let range = NSRange(text.startIndex..., in: text)
            return (regex?.matches(in: text, range: range) ?? []).compactMap { match in
                Range(match.range(at: 1), in: text).map { String(text[$0]) }
            }
        }
        var queues = Set<String>(), routingKeys = Set<String>(), operations = Set<String>()
        var bindings: [String: Set<String>] = [:]
        for service in ["UserService", "OrderService", "PaymentService", "EventStore", "EchoService"] {
            let folder = sources.appendingPathComponent(service)
            var text = ""
            for file in try FileManager.default.contentsOfDirectory(atPath: folder.path) where file.hasSuffix(".swift") {
                text += try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8) + "\n"
            }
            // The example service's name is `ECHO_SERVICE_NAME`, by default `echo`.
            let name =
                service == "EchoService"
                ? "echo" : try #require(matches(#"Service(?:Host|Process)\.run\(name: "([a-z]+)""#, in: text).first, "\(service)")
            queues.formUnion([QueueName.rpc(name).name, QueueName.rpcDeadLetter(name).name])
            operations.formUnion(matches(#"handlers\.on(?:Command|Raw)?\("([a-z]+\.[a-zA-Z]+)""#, in: text))
            operations.formUnion(matches(#"handlers\.on\("\\\(name\)(\.[a-zA-Z]+)""#, in: text).map { "echo" + $0 })
            // What it publishes: the types its stores put in the outbox, and those its command
            // line lists (where the type is computed, `order.\(status)`).
            routingKeys.formUnion(matches(#"enqueue\((?:connection|db), type: "([a-z.]+)""#, in: text))
            for list in matches(#"events published to warren\.events: ([a-z., ]+)""#, in: text) {
                routingKeys.formUnion(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            }
            for list in matches(#"Subscription\(\[([^\]]*)\]\)"#, in: text) {
                let patterns = matches(#""([^"]+)""#, in: list)
                routingKeys.formUnion(patterns)
                bindings["\(name).events", default: []].formUnion(patterns)
                queues.formUnion(
                    [QueueName.events(name).name, QueueName.eventsDeadLetter(name).name]
                        + EventSubscriber.Configuration().retryDelays.map { QueueName.eventsRetry(name, delay: $0).name })
            }
            // The event store's ingestor: its own queue, bound by `#`.
            if text.contains("QueueName.events(QueueName.eventStoreService)") {
                queues.formUnion([QueueName.events(name).name, QueueName.eventsDeadLetter(name).name])
            }
            for key in matches(#"bindQueue\(Self\.queue, exchange: EventPublisher\.exchange, routingKey: "([^"]+)""#, in: text) {
                routingKeys.insert(key)
                bindings["events.events", default: []].insert(key)
            }
        }
        return (queues, [EventPublisher.exchange], routingKeys, bindings, operations)
    }

    static func document() throws -> [String: Any] {
        let text = try String(contentsOf: Schemas.directory.appendingPathComponent("asyncapi.yaml"), encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    /// Every address of the document, its `{parameter}`s replaced by each value of their `enum`.
    static func addresses(_ document: [String: Any]) throws -> Set<String> {
        var out = Set<String>()
        for case let (name, channel as [String: Any]) in document["channels"] as? [String: Any] ?? [:] {
            guard let address = channel["address"] as? String else { continue }
            var expanded = [address]
            for case let (parameter, fields as [String: Any]) in channel["parameters"] as? [String: Any] ?? [:] {
                let values = try #require(fields["enum"] as? [String], "\(name): parameter \(parameter) needs an enum")
                expanded = expanded.flatMap { address in values.map { address.replacingOccurrences(of: "{\(parameter)}", with: $0) } }
            }
            out.formUnion(expanded)
        }
        return out
    }

    @Test("the gathering finds what the system declares (so that an empty set cannot pass)")
    func gatheringWorks() throws {
        let names = try Self.declaredNames()
        #expect(names.queues.isSuperset(of: ["users.rpc", "orders.events", "orders.events.retry.1000ms", "events.events", "payments.events.dlq"]))
        #expect(names.routingKeys.isSuperset(of: ["order.created", "payment.succeeded", "user.deleted", "#"]))
        #expect(names.bindings == ["orders.events": ["payment.succeeded", "payment.failed"], "payments.events": ["order.created", "order.cancelled"], "events.events": ["#"]])
        #expect(names.operations.isSuperset(of: ["users.create", "orders.cancel", "events.query", "echo.echo"]))
        #expect(names.operations.count == 14)
    }

    @Test("every queue, exchange, routing key and operation the code declares is in asyncapi.yaml")
    func declaredNamesAreDocumented() throws {
        let names = try Self.declaredNames()
        let document = try Self.document()
        let addresses = try Self.addresses(document)
        #expect(names.queues.subtracting(addresses).isEmpty, "queues missing: \(names.queues.subtracting(addresses).sorted())")
        #expect(names.exchanges.subtracting(addresses).isEmpty, "exchanges missing: \(names.exchanges.subtracting(addresses).sorted())")

        // Routing keys: a published event's `cc`, or a subscriber queue's binding keys.
        var keys = Set<String>()
        for case let (_, operation as [String: Any]) in document["operations"] as? [String: Any] ?? [:] {
            let amqp = (operation["bindings"] as? [String: Any])?["amqp"] as? [String: Any]
            keys.formUnion(amqp?["cc"] as? [String] ?? [])
        }
        for case let (_, channel as [String: Any]) in document["channels"] as? [String: Any] ?? [:] {
            keys.formUnion(channel["x-warren-binding-keys"] as? [String] ?? [])
        }
        #expect(names.routingKeys.subtracting(keys).isEmpty, "routing keys missing: \(names.routingKeys.subtracting(keys).sorted())")
        // Each subscriber queue with exactly the binding keys its service binds.
        for (queue, declared) in names.bindings {
            let channel = (document["channels"] as? [String: Any] ?? [:]).values.compactMap { $0 as? [String: Any] }.first { $0["address"] as? String == queue }
            #expect(Set(channel?["x-warren-binding-keys"] as? [String] ?? []) == declared, "\(queue): binding keys")
        }

        // An operation: a request message (AMQP `type`) and a reply message of its name.
        let messages = (document["components"] as? [String: Any])?["messages"] as? [String: Any] ?? [:]
        for operation in names.operations {
            for part in ["request", "reply"] {
                let message = messages["\(operation).\(part)"] as? [String: Any]
                #expect(message?["name"] as? String == operation, "no message \(operation).\(part)")
            }
        }
        // And each event type has a message whose AMQP type is the routing key.
        for key in names.routingKeys where !key.contains("*") && !key.contains("#") {
            let message = messages[key] as? [String: Any]
            let amqp = (message?["bindings"] as? [String: Any])?["amqp"] as? [String: Any]
            #expect(amqp?["messageType"] as? String == key, "no message for event \(key)")
        }
    }
}
