import ArgumentParser
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren replay`: send recorded events again, to rebuild a projection or heal a consumer.
struct ReplayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Republish events from the event store, in their original order.",
        discussion: """
            Reads the events matching the filters from the event store (events.query) and
            publishes them again with confirms, in order. With --to, only that service's
            queue <service>.events gets them, so no other subscriber sees them; otherwise
            they go to the warren.events exchange under their type and reach every
            subscriber.

            --to sends only the events the queue's bindings to warren.events would route
            to it (read from RabbitMQ's management API, see warren topology): an
            order.cancelled put straight into a queue bound for order.created would be
            handled as something it is not. The others are skipped and counted by type in
            the summary. Without the management API, or for a queue bound to nothing,
            replay --to refuses and sends nothing.

            A replayed event keeps its id (message_id), type, body and headers, and
            carries x-replayed: true. Its x-correlation-id is this replay's id (printed in
            the summary), the original one moves to x-original-correlation-id. Consumers
            that record applied ids skip events they already applied: to rebuild a
            projection on purpose, clear the projection and its processed ids first, then
            replay to that service only (--to).

            An event that cannot be published as the event store holds it (its properties
            larger than a frame, a type, id or header name over 255 bytes) is skipped: the
            replay goes on, names it (position, id, why) on stderr and in the summary
            ("unpublishable" with --json), and exits 1 at the end.

            --since and --until take ISO 8601 (2026-11-01, 2026-11-01T08:00:00Z) or a time
            back from now (90s, 15m, 2h, 7d).

            Examples:
              warren replay --type 'order.*' --since 2h --to payments --dry-run
              warren replay --aggregate 6f1c… --to orders
              warren replay --correlation support-4711 --rate 100
              warren replay --since 2026-11-01 --until 2026-11-02 --json
            """
    )

    @Option(name: .customLong("type"), help: "Event types, a glob like 'order.*'.")
    var type: String?

    @Option(help: ArgumentHelp("Events at or after this time: ISO 8601, or back from now (90s, 2h, 7d; at most a century).", valueName: "time"))
    var since: TimeArgument?

    @Option(help: ArgumentHelp("Events before this time: ISO 8601, or back from now.", valueName: "time"))
    var until: TimeArgument?

    @Option(help: "Only the events of this aggregate (x-aggregate-id).")
    var aggregate: String?

    @Option(help: "Only the events of this flow (correlation id).")
    var correlation: String?

    @Option(help: ArgumentHelp("Only to this service's queue <service>.events instead of the exchange.", valueName: "service"))
    var to: String?

    @Option(help: "At most this many events per second (\(Self.slowestRate) or more).")
    var rate: Double?

    @Option(help: "At most this many events (sent; with --to, those skipped do not count).")
    var limit: Int?

    @Flag(name: .customLong("dry-run"), help: "Count the events and show a sample; send nothing.")
    var dryRun = false

    @Option(name: .customLong("page-size"), help: "Events per events.query page (1…1000).")
    var pageSize = 1000

    @Option(help: "Publishes awaiting their confirm at once.")
    var window = 1000

    @Option(help: "How long one events.query may take (1ms…1h).")
    var timeout = DurationArgument(.seconds(30), description: "30s")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var management: ManagementOptions
    @OptionGroup var output: OutputOptions

    /// One event in about 17 minutes: slower is a typo, and pacing arithmetic stays small.
    static let slowestRate = 0.001

    func validate() throws {
        // `!(rate >= …)` so that NaN fails too; infinity is a typo, not a rate.
        if let rate, !(rate >= Self.slowestRate) || !rate.isFinite {
            throw ValidationError("--rate must be a finite number of events per second, at least \(Self.slowestRate) (it was \(rate))")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        guard (1...1000).contains(pageSize) else { throw ValidationError("--page-size must be between 1 and 1000") }
        guard (1...65_535).contains(window) else { throw ValidationError("--window must be between 1 and 65535") }
        try timeout.check("--timeout", atMost: .seconds(3600), written: "1h")
        if let since, let until, since.date >= until.date { throw ValidationError("--since must be before --until") }
    }

    var query: EventsQuery {
        EventsQuery(
            type: type, since: since?.iso8601, until: until?.iso8601, aggregateId: aggregate, correlationId: correlation,
            after: nil, limit: min(pageSize, limit ?? pageSize))
    }

    func run() async throws {
        try await reportingFailures {
            let configuration = try connection.configuration(purpose: "replay")
            let connection = try await connection.connect(purpose: "replay")
            let channel = try await connection.openChannel()
            let destination = try await checkDestination(channel)
            let routes = try await queueRoutes(for: destination, configuration: configuration)
            let rpc = try await RPCClient.start(connection: connection)
            // Keeps the calls' deadlines for this scope (cancelled at its end).
            async let _ = rpc.run()
            let replayID = UUID().uuidString.lowercased()
            var events = EventStorePages(
                rpc: rpc, query: query, limit: limit, rate: dryRun ? nil : rate, timeout: timeout.duration, routes: routes)
            let maxHeader = channel.maxContentHeaderSize
            events.publishable = { event in ReplayedEvent(event, replayID: replayID, destination: destination).unpublishable(maxContentHeaderSize: maxHeader) }
            if dryRun {
                try await preview(events)
            } else {
                try await replay(events, replayID: replayID, rpc: rpc, channel: channel, destination: destination)
            }
            await rpc.close()
            await connection.close()
            let unpublishable = events.unpublishable.value
            if !unpublishable.isEmpty {
                throw CLIFailure(
                    .failed,
                    "\(unpublishable.count) event(s) \(dryRun ? "would be" : "were") skipped: they cannot be published as the event store holds them (listed above); --since, --until or --type can leave them out")
            }
        }
    }

    private var targetName: String { to.map { "queue \($0).events" } ?? "exchange \(EventPublisher.exchange)" }

    /// With `--to`, the binding keys by which `warren.events` reaches the queue, so that only
    /// what its subscriber asked for goes there; nil for the exchange, which routes by itself.
    private func queueRoutes(for destination: ReplayedEvent.Destination, configuration: AMQPConfiguration) async throws -> QueueRoutes? {
        guard case .queue(let queue) = destination else { return nil }
        return try await management.eventRoutes(to: [queue], configuration: configuration, command: "replay --to", outcome: "nothing was sent")[queue]
    }

    private func preview(_ events: EventStorePages) async throws {
        var count = 0
        var sample: [StoredEvent] = []
        for try await event in events {
            count += 1
            if sample.count < 5 { sample.append(event) }
        }
        let skipped = events.skipped.value
        if output.json {
            Terminal.json(.object([
                "dryRun": .bool(true), "count": .int(Int64(count)), "target": .string(targetName),
                "sample": .array(sample.map { .object(["position": .int($0.position), "id": .string($0.id), "type": .string($0.type), "timestamp": .string($0.timestamp)]) }),
                "skipped": .int(Int64(skipped.values.reduce(0, +))), "skippedTypes": .object(skipped.mapValues { .int(Int64($0)) }),
                "unpublishable": Self.json(events.unpublishable.value),
            ]))
            return
        }
        Terminal.out("would replay \(count) event(s) to \(Terminal.escape(targetName)); nothing was sent")
        for event in sample {
            let fields = [event.timestamp, event.type, event.id].map { Terminal.escape($0) }
            Terminal.out("  #\(event.position)  \(fields.joined(separator: "  "))")
        }
        if count > sample.count { Terminal.out("  …") }
        if let line = events.routes?.skippedLine(skipped, verb: "would skip") { Terminal.out(line) }
        for line in Self.lines(events.unpublishable.value, verb: "would skip") { Terminal.out(line) }
    }

    /// The events left out because they cannot be published as stored, for the JSON summary.
    static func json(_ unpublishable: [EventStorePages.Unpublishable]) -> JSONValue {
        .array(unpublishable.map { .object(["position": .int($0.position), "id": .string($0.id), "reason": .string($0.reason)]) })
    }

    /// The same for people: a line, then one per event (position, id, reason), escaped.
    static func lines(_ unpublishable: [EventStorePages.Unpublishable], verb: String) -> [String] {
        guard !unpublishable.isEmpty else { return [] }
        return ["\(verb) \(unpublishable.count) event(s) that cannot be published as the event store holds them:"]
            + unpublishable.map { "  #\($0.position)  \(Terminal.escape($0.id))  \(Terminal.escape($0.reason))" }
    }

    private func replay(_ events: EventStorePages, replayID: String, rpc: RPCClient, channel: AMQPChannel, destination: ReplayedEvent.Destination) async throws {
        try await channel.enableConfirms()
        let progress = ReplayProgress()
        if let limit { progress.setTotal(limit) }
        let counting: Task<Void, Never>? =
            progress.isTerminal
            ? Task { [query, limit, timeout, routes = events.routes] in
                if let total = await countEvents(rpc: rpc, query: query, limit: limit, routes: routes, timeout: timeout.duration) {
                    progress.setTotal(total)
                }
            } : nil

        // The event being published: one the channel refuses (a type or id beyond AMQP's 255
        // bytes) is the event store's, not a usage error, and the operator needs to know which.
        let current = Shared<StoredEvent?>(nil)
        let messages = events.map { event in
            current.set(event)
            return ReplayedEvent(event, replayID: replayID, destination: destination).message
        }
        var done = 0
        do {
            try await OrderedPublisher(channel: channel, window: window).publish(messages) { _ in
                done += 1
                progress.advance(to: done)
            }
        } catch {
            counting?.cancel()
            progress.finish(done: done)
            var failure = CLIFailure.from(error)
            if case .invalidArgument(let detail) = error as? AMQPError, let event = current.value {
                failure = CLIFailure(
                    .failed,
                    "event #\(event.position) (id \(Terminal.escape(event.id))) cannot be published as the event store holds it: \(Terminal.escape(detail)); --since or --type can leave it out")
            }
            throw CLIFailure(
                failure.kind,
                "\(failure.message)\nreplay \(replayID) stopped after \(done) confirmed event(s); running it again is safe: consumers skip event ids they applied")
        }
        counting?.cancel()
        progress.finish(done: done)
        let seconds = progress.elapsed.seconds
        let rate = seconds > 0 ? Double(done) / seconds : 0
        let skipped = events.skipped.value
        if output.json {
            Terminal.json(.object([
                "replayed": .int(Int64(done)), "target": .string(targetName), "correlationId": .string(replayID),
                "seconds": .double((seconds * 1000).rounded() / 1000), "eventsPerSecond": .double(rate.rounded()),
                "skipped": .int(Int64(skipped.values.reduce(0, +))), "skippedTypes": .object(skipped.mapValues { .int(Int64($0)) }),
                "unpublishable": Self.json(events.unpublishable.value),
            ]))
        } else {
            Terminal.out(String(format: "replayed %d event(s) to %@ in %.1f s (%.0f events/s); replay correlation id %@", done, Terminal.escape(targetName), seconds, rate, replayID))
            if let line = events.routes?.skippedLine(skipped, verb: "skipped") { Terminal.out(line) }
            for line in Self.lines(events.unpublishable.value, verb: "skipped") { Terminal.out(line) }
        }
    }

    /// Where the events go; fails before reading the store when that place does not exist.
    /// For a dry run too: it tells what a replay would do.
    private func checkDestination(_ channel: AMQPChannel) async throws -> ReplayedEvent.Destination {
        if let to {
            let queue = "\(to).events"
            do {
                _ = try await channel.inspectQueue(queue)
            } catch AMQPError.channelClosed(404, _) {
                throw CLIFailure(.failed, "there is no queue \(queue): is \(to) a service that subscribes to events? `warren topology` lists them")
            }
            return .queue(queue)
        }
        do {
            try await channel.checkExchange(EventPublisher.exchange)
        } catch AMQPError.channelClosed(404, _) {
            throw CLIFailure(.failed, "there is no exchange \(EventPublisher.exchange): start the services first (`make run`)")
        }
        return .exchange(EventPublisher.exchange)
    }
}

/// A stored event made ready to publish again: same id, type, body and headers, marked as a
/// replay and carrying the replay's correlation id (the original one kept beside it).
struct ReplayedEvent {
    enum Destination: Sendable {
        case queue(String)
        case exchange(String)
    }

    static let originalCorrelationID = WireHeader.originalCorrelationID

    let event: StoredEvent
    let replayID: String
    let destination: Destination

    init(_ event: StoredEvent, replayID: String, destination: Destination) {
        self.event = event
        self.replayID = replayID
        self.destination = destination
    }

    /// Why the event cannot be published as the event store holds it (what AMQP cannot carry: a
    /// property or header name over 255 bytes, properties larger than a frame), or nil. Checked
    /// before publishing, so that the replay leaves out this event alone: once the channel
    /// refused a publish, the replay could only stop.
    func unpublishable(maxContentHeaderSize: Int) -> String? {
        let message = self.message
        guard message.routingKey.utf8.count <= 255 else {
            return "its type, the routing key, is \(message.routingKey.utf8.count) bytes; AMQP allows at most 255"
        }
        do {
            let size = try message.properties.contentHeaderSize
            guard size <= maxContentHeaderSize else {
                return "the message properties take \(size) bytes; one frame holds \(maxContentHeaderSize)"
            }
            return nil
        } catch {
            if case .invalidArgument(let detail) = error { return detail }
            return "\(error)"
        }
    }

    var message: OutgoingMessage {
        var headers = event.headers
        if let original = event.correlationId ?? headers[WireHeader.correlationID]?.stringValue {
            headers[Self.originalCorrelationID] = .string(original)
        }
        headers[WireHeader.correlationID] = .string(replayID)
        headers[WireHeader.replayed] = .bool(true)
        if let aggregate = event.aggregateId, headers[WireHeader.aggregateID] == nil { headers[WireHeader.aggregateID] = .string(aggregate) }
        if let causation = event.causationId, headers[WireHeader.causationID] == nil { headers[WireHeader.causationID] = .string(causation) }
        let properties = AMQPProperties(
            contentType: "application/json", headers: headers, deliveryMode: .persistent, correlationID: replayID,
            messageID: event.id, timestamp: WireTime.parse(event.timestamp)?.date, type: event.type, appID: "warren-replay")
        let body = event.body
        switch destination {
        case .queue(let queue):
            return OutgoingMessage(body: body, exchange: "", routingKey: queue, mandatory: true, properties: properties)
        case .exchange(let exchange):
            return OutgoingMessage(body: body, exchange: exchange, routingKey: event.type, mandatory: false, properties: properties)
        }
    }
}

/// A point in time: ISO 8601 (`2026-11-01`, `2026-11-01T08:00:00Z`) or back from now (`2h`).
struct TimeArgument: ExpressibleByArgument, Sendable {
    let date: Date

    init?(argument: String) {
        if let date = WireTime.parse(argument)?.date {
            self.date = date
        } else if let back = DurationArgument(argument: argument) {
            self.date = Date() - back.duration.seconds
        } else {
            return nil
        }
    }

    var iso8601: String { WireTime.format(date) }
}
