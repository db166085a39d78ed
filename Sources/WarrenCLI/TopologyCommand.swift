import ArgumentParser
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren topology`: service discovery read from the broker itself. A service exists when its
/// queues do; an instance is a consumer on them.
struct TopologyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Show the services, their queues, consumers, depths, bindings and dead letters.",
        discussion: """
            Queue names come from RabbitMQ's management API; consumer counts and depths
            are read over AMQP at the same moment, so they are exact. A queue named
            <service>.rpc, <service>.events, <service>.events.retry.<ms>ms or
            <service>.{events,rpc}.dlq belongs to <service>; other queues are listed
            apart.

            Examples:
              warren topology
              warren topology --json | jq '.services[] | select(.deadLetters > 0) | .name'
            """
    )

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var management: ManagementOptions
    @OptionGroup var output: OutputOptions

    struct QueueRow {
        var name: String
        var role: String
        var consumers: Int
        var messages: Int
        var bindings: [String]
    }

    func run() async throws {
        try await reportingFailures {
            let configuration = try connection.configuration(purpose: "topology")
            let api = try management.api(for: configuration)
            let names = try await api.queues().map(\.name).filter { !$0.hasPrefix("amq.") }.sorted()
            let bindings = try await api.bindings().filter { $0.source == EventPublisher.exchange && $0.destination_type == "queue" }
            let amqp = try await connection.connect(purpose: "topology")
            let channel = try await amqp.openChannel()
            var services: [String: [QueueRow]] = [:]
            var others: [QueueRow] = []
            for name in names {
                // Deleted meanwhile (404; the channel reopens on its next use): gone. Any other
                // failure fails the command: a topology with queues silently missing is wrong.
                guard let info = try await inspectIfPresent(name, on: channel) else { continue }
                let patterns = bindings.filter { $0.destination == name }.map(\.routing_key).sorted()
                let (service, role) = Self.classify(name)
                let row = QueueRow(name: name, role: role, consumers: Int(info.consumerCount), messages: Int(info.messageCount), bindings: patterns)
                if let service { services[service, default: []].append(row) } else { others.append(row) }
            }
            await amqp.close()
            if output.json {
                printJSON(services: services, others: others)
            } else {
                printText(services: services, others: others)
            }
        }
    }

    /// Which service a queue belongs to and what it is for, by Warren's naming convention.
    static func classify(_ name: String) -> (service: String?, role: String) {
        guard let queue = QueueName(parsing: name) else { return (nil, "other") }
        switch queue.kind {
        case .rpc: return (queue.service, "rpc")
        case .events: return (queue.service, "events")
        case .eventsRetry: return (queue.service, "retry")
        case .rpcDeadLetter, .eventsDeadLetter: return (queue.service, "dead letters")
        }
    }

    private func printJSON(services: [String: [QueueRow]], others: [QueueRow]) {
        func queue(_ row: QueueRow) -> JSONValue {
            .object([
                "name": .string(row.name), "role": .string(row.role), "consumers": .int(Int64(row.consumers)),
                "messages": .int(Int64(row.messages)), "bindings": .array(row.bindings.map(JSONValue.string)),
            ])
        }
        let list: [JSONValue] = services.keys.sorted().map { name in
            let rows = services[name] ?? []
            return .object([
                "name": .string(name),
                "instances": .int(Int64(rows.first { $0.role == "rpc" }?.consumers ?? rows.first { $0.role == "events" }?.consumers ?? 0)),
                "deadLetters": .int(Int64(rows.filter { $0.role == "dead letters" }.map(\.messages).reduce(0, +))),
                "queues": .array(rows.map(queue)),
            ])
        }
        Terminal.json(.object(["exchange": .string(EventPublisher.exchange), "services": .array(list), "otherQueues": .array(others.map(queue))]))
    }

    private func printText(services: [String: [QueueRow]], others: [QueueRow]) {
        // Queue names and binding keys come from the management API: escaped, then measured.
        let width = max(24, (services.values.flatMap { $0 } + others).map { Terminal.escape($0.name).count }.max() ?? 0)
        func line(_ row: QueueRow) -> String {
            var text = "  " + Terminal.escape(row.name).padding(toLength: width, withPad: " ", startingAt: 0)
            text += "  consumers \(row.consumers)".padding(toLength: 14, withPad: " ", startingAt: 0)
            text += "  messages \(row.messages)"
            if !row.bindings.isEmpty {
                text += "  ← \(EventPublisher.exchange): \(row.bindings.map { Terminal.escape($0) }.joined(separator: ", "))"
            }
            if row.role == "dead letters", row.messages > 0 { text += "  (warren dlq show)" }
            return text
        }
        if services.isEmpty, others.isEmpty { Terminal.out("no queues on this vhost: are the services running? `make run` starts them") }
        for name in services.keys.sorted() {
            Terminal.out(Terminal.escape(name))
            for row in services[name] ?? [] { Terminal.out(line(row)) }
        }
        if !others.isEmpty {
            Terminal.out("other queues")
            for row in others { Terminal.out(line(row)) }
        }
    }
}
