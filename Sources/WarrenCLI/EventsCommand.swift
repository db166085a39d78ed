import ArgumentParser
import UnixSignals
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren events`: watch the event bus.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Watch the events on warren.events.",
        subcommands: [Tail.self]
    )

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print events as they are published, until Ctrl-C.",
            discussion: """
                Listens through a temporary queue of its own (exclusive, deleted when the
                command ends), so no service's queue loses anything. One line per event: time,
                type, id, correlation id and the start of the body; replays are marked. --json
                prints every message in full, one JSON document per line.

                Examples:
                  warren events tail
                  warren events tail --type 'order.*' --type 'payment.*'
                  warren events tail --json | jq 'select(.properties.type == "order.cancelled")'
                """
        )

        @Option(name: .customLong("type"), help: ArgumentHelp("Event types to show, a topic pattern like 'order.*' or 'order.#' (repeatable).", valueName: "pattern"))
        var patterns: [String] = ["#"]

        func validate() throws {
            // An empty binding key matches only events with an empty type: never what was meant.
            if patterns.contains(where: \.isEmpty) { throw ValidationError("--type needs a pattern, like 'order.*' or '#' (every event)") }
        }

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            try await reportingFailures {
                let connection = try await connection.connect(purpose: "events tail")
                let channel = try await connection.openChannel()
                try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
                let queue = try await channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
                for pattern in patterns {
                    try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: pattern)
                }
                let events = try await channel.consume(queue: queue, noAck: true)
                // Ctrl-C and SIGTERM end the tail cleanly (exit 0) instead of killing the process;
                // trapped before the note, so that a signal sent on seeing it is not the default kill.
                let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
                Terminal.note("listening on \(EventPublisher.exchange) for \(patterns.joined(separator: ", ")) (Ctrl-C to stop)")
                let printing = Task { [json = output.json] in
                    for try await delivery in events {
                        if json {
                            Terminal.json(JSONValue(delivery))
                        } else {
                            Terminal.out(Self.line(delivery))
                        }
                    }
                }
                let interrupt = Task {
                    for await _ in signals {
                        printing.cancel()
                        return
                    }
                }
                let result = await printing.result
                interrupt.cancel()
                await connection.close()
                if case .failure(let error) = result, !(error is CancellationError) { throw error }
            }
        }

        /// `time  type  id  correlation  body…`, the body cut to fit a line. Every field is from
        /// whoever published: each is escaped (line breaks too), after the body is cut, so that
        /// the cut cannot split an escape.
        static func line(_ delivery: AMQPDelivery) -> String {
            let properties = delivery.properties
            let headers = properties.headers ?? [:]
            let time = (properties.timestamp ?? Date()).formatted(.iso8601)
            let type = Terminal.escape(properties.type ?? delivery.routingKey)
            let id = Terminal.escape(properties.messageID ?? "-")
            let correlation = Terminal.escape(headers[WireHeader.correlationID]?.stringValue ?? properties.correlationID ?? "-")
            var body = String(decoding: delivery.body.prefix(200), as: UTF8.self).replacingOccurrences(of: "\n", with: " ")
            if body.count > 80 { body = String(body.prefix(79)) + "…" }
            let replay = headers[WireHeader.replayed] == .bool(true) ? "  (replay)" : ""
            return "\(time)  \(type)  \(id)  \(correlation)  \(Terminal.escape(body))\(replay)"
        }
    }
}
