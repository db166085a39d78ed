import ArgumentParser
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren dlq`: the dead-letter queues, `<service>.events.dlq` and `<service>.rpc.dlq`.
struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect, requeue and purge dead-letter queues.",
        discussion: """
            A service parks the events it gave up on in <service>.events.dlq (with
            x-error, x-attempts and x-original-routing-key) and invalid fire-and-forget
            commands in <service>.rpc.dlq. <service> below means both; a dead-letter
            queue's name (any name ending in .dlq, exactly as typed) means that one, and
            a service queue's (<service>.events, <service>.rpc) means its dead-letter
            queue (said on stderr).

            Examples:
              warren dlq list
              warren dlq show payments --limit 5
              warren dlq requeue payments --all
              warren dlq requeue payments.events.dlq --id 0b5e…
              warren dlq show users.rpc             # users.rpc.dlq
              warren dlq purge payments --yes
            """,
        subcommands: [List.self, Show.self, Requeue.self, Purge.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every dead-letter queue with its message count.")

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var management: ManagementOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await reportingFailures {
                let api = try management.api(for: try connection.configuration(purpose: "dlq list"))
                let names = try await api.queues().map(\.name).filter(DeadLetterQueue.isDeadLetterQueue).sorted()
                let amqp = try await connection.connect(purpose: "dlq list")
                let channel = try await amqp.openChannel()
                var rows: [(queue: DeadLetterQueue, messages: Int)] = []
                for name in names {
                    // Deleted between listing and counting: not a dead-letter queue any more.
                    // Any other failure fails the list: a queue left out would read as empty.
                    guard let info = try await inspectIfPresent(name, on: channel) else { continue }
                    rows.append((DeadLetterQueue(name: name), Int(info.messageCount)))
                }
                await amqp.close()
                if output.json {
                    Terminal.json(.array(rows.map { row in
                        .object([
                            "queue": .string(row.queue.name), "service": .string(row.queue.service),
                            "target": .string(row.queue.target), "messages": .int(Int64(row.messages)),
                        ])
                    }))
                } else if rows.isEmpty {
                    Terminal.out("no dead-letter queues")
                } else {
                    // Names come from the management API: escaped before they are measured.
                    let names = rows.map { Terminal.escape($0.queue.name) }
                    let width = max(5, names.map(\.count).max() ?? 0)
                    Terminal.out("QUEUE".padding(toLength: width, withPad: " ", startingAt: 0) + "  MESSAGES")
                    for (name, row) in zip(names, rows) {
                        Terminal.out(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(row.messages)")
                    }
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the oldest dead letters without taking them away.",
            discussion: """
                The messages are received without an acknowledgement and handed back when the
                command closes its channel, which puts them back at their places: the queue
                keeps its messages and their order (they are marked redelivered).
                """
        )

        @Argument(help: ArgumentHelp("A service (both its dead-letter queues), one dead-letter queue, or a service queue (its dead-letter queue).", valueName: "service"))
        var service: String

        @Option(help: "At most this many messages per queue (1…10000).")
        var limit = 20

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            try DeadLetterQueue.checkArgument(service)
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
        }

        func run() async throws {
            try await reportingFailures {
                let amqp = try await connection.connect(purpose: "dlq show")
                var shown: [(DeadLetterQueue, [AMQPDelivery], Int)] = []
                for queue in try await DeadLetterQueue.existing(for: service, verb: "showing", on: amqp) {
                    let (messages, total) = try await queue.peek(limit, on: amqp)
                    shown.append((queue, messages, total))
                }
                await amqp.close()
                if output.json {
                    Terminal.json(.array(shown.map { queue, messages, total in
                        .object(["queue": .string(queue.name), "messages": .int(Int64(total)), "shown": .array(messages.map(JSONValue.init))])
                    }))
                    return
                }
                for (queue, messages, total) in shown {
                    Terminal.out("\(Terminal.escape(queue.name)): \(total) message(s)\(total > messages.count ? ", the oldest \(messages.count) shown" : "")")
                    for (index, delivery) in messages.enumerated() {
                        Terminal.out(Self.describe(delivery, index: index + 1))
                    }
                }
            }
        }

        /// Three lines per message; every piece of it is from outside, so each is escaped, line
        /// breaks included (a body's `\n` shows as `\n`), and cannot forge or drive anything.
        static func describe(_ delivery: AMQPDelivery, index: Int) -> String {
            let properties = delivery.properties
            let headers = properties.headers ?? [:]
            let type = Terminal.escape(headers[WireHeader.originalRoutingKey]?.stringValue ?? properties.type ?? "-")
            let attempts = headers[WireHeader.attempts]?.intValue.map { "  attempts \($0)" } ?? ""
            // Warren writes at most 1,024 bytes; another client may have written megabytes.
            let error = Terminal.escape(ErrorReply.bounded(headers[WireHeader.error]?.stringValue ?? "-"))
            let body = Terminal.escape(String(decoding: delivery.body.prefix(300), as: UTF8.self))
            let id = properties.messageID.map { Terminal.escape($0) } ?? "(no message id)"
            return """
                \(index). \(id)  \(type)\(attempts)
                   error: \(error)
                   body:  \(body)
                """
        }
    }

    struct Requeue: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send dead letters back to their service's queue.",
            discussion: """
                Events go back to <service>.events (x-original-routing-key kept, x-error and
                x-attempts dropped so they get their retries again), commands to
                <service>.rpc. Each copy is published with a confirm and the dead letter is
                removed only after the broker confirmed the copy: interrupting the command
                (Ctrl-C, a crash, a lost connection) loses nothing, at worst a message is in
                both queues, and consumers skip event ids they already applied. Messages not
                selected keep their places.

                An event goes back to <service>.events only when the queue's bindings to
                warren.events route its type (read from RabbitMQ's management API, as replay
                --to does): one that reached the dead letters without having been routed there
                stays, is counted by type, and the command exits 1. Without the management
                API nothing is requeued from an events dead-letter queue.
                """
        )

        @Argument(help: ArgumentHelp("A service (both its dead-letter queues), one dead-letter queue, or a service queue (its dead-letter queue).", valueName: "service"))
        var service: String

        @Option(name: .customLong("id"), help: ArgumentHelp("Requeue the message with this message id (repeatable).", valueName: "message-id"))
        var ids: [String] = []

        @Flag(help: "Requeue every message.")
        var all = false

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var management: ManagementOptions
        @OptionGroup var output: OutputOptions

        func validate() throws {
            try DeadLetterQueue.checkArgument(service)
            if all == !ids.isEmpty { throw ValidationError("say which messages: --id <message-id> (repeatable) or --all") }
        }

        func run() async throws {
            try await reportingFailures {
                let amqp = try await connection.connect(purpose: "dlq requeue")
                let queues = try await DeadLetterQueue.existing(for: service, verb: "requeueing from", on: amqp)
                // Events go back past the exchange: only those their queue's bindings route.
                let routes = try await management.eventRoutes(
                    to: queues.map(\.target).filter { QueueName(parsing: $0)?.kind == .events }, configuration: try connection.configuration(purpose: "dlq requeue"),
                    command: "dlq requeue", outcome: "nothing was requeued")
                var moved: [(queue: DeadLetterQueue, result: DeadLetterQueue.Requeued)] = []
                var missing = Set(ids)
                for queue in queues {
                    let result = try await queue.requeue(ids: all ? nil : Set(ids), routes: routes[queue.target], on: amqp)
                    missing.subtract(result.found)
                    moved.append((queue, result))
                }
                await amqp.close()
                if output.json {
                    Terminal.json(.object([
                        "requeued": .array(moved.map { queue, result in
                            .object([
                                "from": .string(queue.name), "to": .string(queue.target), "messages": .int(Int64(result.moved)),
                                "kept": .int(Int64(result.kept.values.reduce(0, +))), "keptTypes": .object(result.kept.mapValues { .int(Int64($0)) }),
                            ])
                        }),
                        "notFound": .array(missing.sorted().map(JSONValue.string)),
                    ]))
                } else {
                    for (queue, result) in moved {
                        Terminal.out("requeued \(result.moved) message(s) from \(Terminal.escape(queue.name)) to \(Terminal.escape(queue.target))")
                    }
                }
                let kept = moved.compactMap { queue, result in routes[queue.target]?.skippedLine(result.kept, verb: "kept back") }
                if !missing.isEmpty || !kept.isEmpty {
                    var problems = kept.map { $0 + "; they stay in the dead letters" }
                    if !missing.isEmpty {
                        problems.append("no dead letter with id \(missing.sorted().map { Terminal.escape($0) }.joined(separator: ", ")): `warren dlq show \(Terminal.quoted(service))` lists them")
                    }
                    throw CLIFailure(.failed, problems.joined(separator: "\n"))
                }
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete every dead letter (asks first).")

        @Argument(help: ArgumentHelp("A service (both its dead-letter queues), one dead-letter queue, or a service queue (its dead-letter queue).", valueName: "service"))
        var service: String

        @Flag(name: [.long, .customShort("y")], help: "Do not ask for confirmation.")
        var yes = false

        func validate() throws { try DeadLetterQueue.checkArgument(service) }

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await reportingFailures {
                let amqp = try await connection.connect(purpose: "dlq purge")
                let queues = try await DeadLetterQueue.existing(for: service, verb: "purging", on: amqp)
                if !yes {
                    let channel = try await amqp.openChannel()
                    var counts: [String] = []
                    for queue in queues { counts.append("\(try await channel.inspectQueue(queue.name).messageCount) in \(Terminal.quoted(queue.name))") }
                    guard Terminal.stdinIsTTY else {
                        throw CLIFailure(.usage, "purging deletes \(counts.joined(separator: " and ")) for good; pass --yes to confirm")
                    }
                    Terminal.prompt("delete \(counts.joined(separator: " and ")) for good? type yes: ")
                    guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
                        throw CLIFailure(.failed, "nothing was purged")
                    }
                }
                let channel = try await amqp.openChannel()
                var purged: [(String, Int)] = []
                for queue in queues { purged.append((queue.name, Int(try await channel.purgeQueue(queue.name)))) }
                await amqp.close()
                if output.json {
                    Terminal.json(.array(purged.map { .object(["queue": .string($0), "purged": .int(Int64($1))]) }))
                } else {
                    for (name, count) in purged { Terminal.out("purged \(count) message(s) from \(Terminal.escape(name))") }
                }
            }
        }
    }
}
