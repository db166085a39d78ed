import ArgumentParser
import AsyncAlgorithms
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren publish`: put an event (or many) on the bus, as a service's outbox relay would.
struct PublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish events to warren.events (or a queue) with publisher confirms.",
        discussion: """
            The routing key is the event type (AMQP type and routing key). The command
            returns once the broker confirmed every message. An event no queue is bound
            for is reported as unrouted (a warning: pub/sub allows nobody to listen). With
            --lines, stdin holds one JSON body per line; every line is checked before the
            first is published.

            --queue to a subscriber's queue (<service>.events) publishes only an event type
            the queue's bindings to warren.events would route to it, read from RabbitMQ's
            management API: a subscriber would take another type for something it is not.
            Another type, a queue bound to nothing, or no answer from the management API
            refuse before anything is sent.

            Examples:
              warren publish order.created '{"id":"…","userId":"…","totalCents":1200}'
              warren publish user.updated @user.json --header x-aggregate-id=6f1c…
              warren publish payment.failed @event.json --queue orders.events
              jq -c '.[]' events.json | warren publish order.created --lines
            """
    )

    @Argument(help: "The routing key: the event type, e.g. order.created (lower case, at least one dot; no * or #).")
    var routingKey: String

    @Argument(help: ArgumentHelp("The event body: \(MessageInput.help) Default {}.", valueName: "json|@file|-"))
    var body: String?

    @Option(help: "The exchange to publish to.")
    var exchange = EventPublisher.exchange

    @Option(help: "Publish straight to this queue (default exchange) instead of the exchange, e.g. orders.events.")
    var queue: String?

    @Option(
        name: .customLong("header"),
        help: ArgumentHelp(
            "A header to send, key=value (repeatable). x-correlation-id, x-causation-id, x-aggregate-id: 1 to 255 bytes; traceparent: W3C; x-deadline and headers Warren writes (x-error, x-replayed, …) are refused.",
            valueName: "key=value"))
    var headers: [String] = []

    @Option(name: .customLong("message-id"), help: "The event id, 1 to 255 bytes (default: a new UUID). Consumers apply each id once.")
    var messageID: String?

    @Option(name: .customLong("correlation-id"), help: "The flow's correlation id (header x-correlation-id; default: a new UUID).")
    var correlationID: String?

    @Flag(inversion: .prefixedNo, help: "Ask the broker to write the message to disk (events are persistent).")
    var persistent = true

    @Flag(help: "Read many bodies from stdin, one JSON document per line.")
    var lines = false

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var management: ManagementOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        do {
            try EventType.check(routingKey, "the event type")
        } catch {
            throw ValidationError("'\(Terminal.escape(routingKey))': \(error.message)")
        }
        if let messageID { try HeaderOptions.checkID(messageID, "--message-id") }
        _ = try HeaderOptions(headers, for: .publish, correlationID: correlationID)
        if lines, body != nil { throw ValidationError("--lines reads the bodies from stdin: drop the body argument") }
        if lines, messageID != nil { throw ValidationError("--message-id names one event; with --lines every event gets its own id") }
    }

    func run() async throws {
        try await reportingFailures {
            let bodies = try readBodies()
            let options = try HeaderOptions(self.headers, for: .publish, correlationID: correlationID)
            let headers = options.headers
            let connection = try await connection.connect(purpose: "publish")
            let channel = try await connection.openChannel()
            let target = try await checkTarget(channel)
            if let queue, QueueName(parsing: queue)?.kind == .events { try await checkRoutes(to: queue) }
            try await channel.enableConfirms()

            let correlationID = options.correlationID ?? UUID().uuidString.lowercased()
            var ids: [String] = []
            var messages: [OutgoingMessage] = []
            for body in bodies {
                let id = messageID ?? UUID().uuidString.lowercased()
                ids.append(id)
                var messageHeaders = headers
                messageHeaders[WireHeader.correlationID] = .string(correlationID)
                let properties = AMQPProperties(
                    contentType: "application/json", headers: messageHeaders, deliveryMode: persistent ? .persistent : .transient,
                    correlationID: correlationID, messageID: id, timestamp: Date(), type: routingKey, appID: "warren-cli")
                messages.append(OutgoingMessage(body: body, exchange: target.exchange, routingKey: target.routingKey, mandatory: true, properties: properties))
            }
            var unrouted = 0
            try await OrderedPublisher(channel: channel, window: 256).publish(messages.async) { outcome in
                if case .unrouted = outcome { unrouted += 1 }
            }
            await connection.close()
            report(ids: ids, unrouted: unrouted, target: target)
            if unrouted > 0, queue != nil {
                throw CLIFailure(.failed, "the broker returned \(unrouted) message(s) for queue \(target.routingKey): was it deleted meanwhile?")
            }
        }
    }

    private func readBodies() throws -> [Data] {
        guard lines else { return [try MessageInput.read(body)] }
        let input = FileHandle.standardInput.readDataToEndOfFile()
        var bodies: [Data] = []
        for (index, line) in input.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            let trimmed = Data(line).trimmingWhitespace()
            if trimmed.isEmpty { continue }
            try MessageInput.checkJSON(trimmed, source: "stdin line \(index + 1)")
            bodies.append(trimmed)
        }
        guard !bodies.isEmpty else { throw CLIFailure(.usage, "stdin held no lines to publish") }
        return bodies
    }

    /// Fails before publishing anything when the destination is missing, with what to do.
    private func checkTarget(_ channel: AMQPChannel) async throws -> (exchange: String, routingKey: String, name: String) {
        if let queue {
            do {
                _ = try await channel.inspectQueue(queue)
            } catch AMQPError.channelClosed(404, _) {
                throw CLIFailure(.failed, "there is no queue \(queue): `warren topology` lists the queues")
            }
            return ("", queue, "queue \(queue)")
        }
        do {
            try await channel.checkExchange(exchange)
        } catch AMQPError.channelClosed(404, _) {
            throw CLIFailure(.failed, "there is no exchange \(exchange): services declare warren.events when they start (`make run`)")
        }
        return (exchange, routingKey, "exchange \(exchange)")
    }

    /// Refuses to put an event straight into a subscriber's queue that its bindings would not
    /// route there (the same rule as `replay --to`), or when the bindings cannot be read.
    private func checkRoutes(to queue: String) async throws {
        let routes = try await management.eventRoutes(
            to: [queue], configuration: try connection.configuration(purpose: "publish"), command: "publish --queue", outcome: "nothing was sent")
        guard let routes = routes[queue], routes.routes(routingKey) else {
            let keys = routes[queue]?.bindingKeys.map { Terminal.escape($0) }.joined(separator: ", ") ?? ""
            throw CLIFailure(
                .failed,
                "queue \(Terminal.escape(queue)) is bound to \(EventPublisher.exchange) for \(keys), not for \(Terminal.escape(routingKey)): its subscriber would take it for something it is not; nothing was sent (publish to the exchange, without --queue, to reach whoever subscribes to it)")
        }
    }

    private func report(ids: [String], unrouted: Int, target: (exchange: String, routingKey: String, name: String)) {
        if output.json {
            Terminal.json(.object([
                "published": .int(Int64(ids.count)), "unrouted": .int(Int64(unrouted)),
                "messageIds": .array(ids.map(JSONValue.string)), "target": .string(target.name),
            ]))
            return
        }
        let what = ids.count == 1 ? "event \(ids[0])" : "\(ids.count) events"
        Terminal.out("published \(what) as \(Terminal.escape(routingKey)) to \(Terminal.escape(target.name))")
        if unrouted > 0, queue == nil {
            Terminal.note("warning: no queue is bound for \(Terminal.escape(routingKey)) on \(Terminal.escape(exchange)): \(unrouted) event(s) reached nobody")
        }
    }
}

extension Data {
    func trimmingWhitespace() -> Data {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D || $0 == 0x0A }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return Data() }
        return Data(self[first...last])
    }
}
