import ArgumentParser
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren flow`: one request's way through the system, from the event store.
struct FlowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flow",
        abstract: "Show every event of one flow as a causation tree.",
        discussion: """
            Asks the event store (events.flow) for every event with the correlation id (the
            gateway's X-Request-ID) and draws which event caused which, from which service,
            when, and how long after its cause (+ms). A flow that stopped half way is marked:
            an order.created without order.confirmed or order.cancelled, a payment.succeeded
            without order.confirmed or payment.refunded (either looked for in the flow, then
            for the same order in the whole store), or a message of the flow in a dead-letter
            queue (looked up through the management API: WARREN_MANAGEMENT_URL or
            --management-url).
            Exits 1 when the flow stopped half way or has no events. When the dead-letter
            queues cannot be checked (management API unreachable, a queue unreadable), a
            flow that looks complete is reported as unknown, with why, and exits 5: a
            message of it may sit in a dead-letter queue. --no-dlq skips that check on purpose.

            Examples:
              warren flow 4f0c6f7e-1b1e-4c55-9a57-0b6f0e8f3c1d
              warren flow 4f0c6f7e-… --json | jq .status
            """
    )

    @Argument(help: "The flow's correlation id (X-Request-ID of the HTTP request that started it).")
    var correlationID: String

    @Option(help: "How long to wait for the event store: 500ms, 5s, 1m.")
    var timeout = DurationArgument(.seconds(10), description: "10s")

    @Flag(name: .customLong("no-dlq"), help: "Do not look into the dead-letter queues.")
    var skipDeadLetters = false

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var management: ManagementOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard !correlationID.isEmpty, correlationID.utf8.count <= 255, !correlationID.utf8.contains(0) else {
            throw ValidationError("the correlation id must be 1 to 255 bytes without NUL")
        }
        try timeout.check("--timeout", atMost: .seconds(86_400), written: "24h")
    }

    func run() async throws {
        try await reportingFailures {
            let amqp = try await connection.connect(purpose: "flow")
            let rpc = try await RPCClient.start(connection: amqp)
            // Keeps the calls' deadlines for this scope (cancelled at its end).
            async let _ = rpc.run()
            let result: Result<EventFlow, ServiceError>
            do throws(ServiceError) {
                result = .success(
                    try await rpc.call("events.flow", EventFlowRequest(correlationId: correlationID), as: EventFlow.self, timeout: timeout.duration))
            } catch {
                result = .failure(error)
            }
            await rpc.close()
            var flow: EventFlow
            switch result {
            case .success(let value): flow = value
            case .failure(let error):
                await amqp.close()
                if error.code == .timeout || error.code == .unavailable {
                    throw CLIFailure(
                        error.code == .timeout ? .timeout : .failed,
                        "the event store did not answer events.flow (\(Terminal.escape(error.message))). Is it running? `make run` starts it")
                }
                throw CLIFailure.from(error)
            }
            // Why the dead-letter queues could not be checked, if they could not: a flow
            // that looks complete may then have a message in one, and is not called complete.
            var unchecked: String?
            if !skipDeadLetters, flow.status != .empty {
                do {
                    flow.markDeadLettered(try await deadLettered(on: amqp))
                } catch {
                    unchecked = CLIFailure.from(error).message
                }
            }
            await amqp.close()
            let unknown = unchecked != nil && flow.status == .complete
            if output.json {
                Terminal.json(Self.json(flow, deadLettersUnchecked: unchecked))
            } else {
                for line in Self.lines(flow, deadLettersUnchecked: unchecked) { Terminal.out(line) }
            }
            if let unchecked {
                Terminal.note("dead-letter queues could not be checked: \(unchecked)")
            }
            if unknown { throw ExitCode(CLIFailure.Kind.unknown.rawValue) }
            if flow.status != .complete { throw ExitCode(CLIFailure.Kind.failed.rawValue) }
        }
    }

    /// Message ids of this flow found in any dead-letter queue (id → queues), the queues read
    /// without taking anything from them (`DeadLetterQueue.peek`).
    private func deadLettered(on amqp: AMQPConnection) async throws -> [String: [String]] {
        let api = try management.api(for: try connection.configuration(purpose: "flow"))
        let queues = try await api.queues().filter { DeadLetterQueue.isDeadLetterQueue($0.name) || $0.name == "events.dlq" }
        var found: [String: [String]] = [:]
        for queue in queues.sorted(by: { $0.name < $1.name }) {
            let (messages, _) = try await DeadLetterQueue(name: queue.name).peek(Self.maxPeek, on: amqp)
            for message in messages {
                let properties = message.properties
                let correlation = properties.headers?[WireHeader.correlationID]?.stringValue ?? properties.correlationID
                guard correlation == correlationID, let id = properties.messageID else { continue }
                found[id, default: []].append(queue.name)
            }
        }
        return found
    }

    /// The most messages read from each dead-letter queue.
    static let maxPeek = 1000

    /// The flow for scripts: the event store's document, and when the dead-letter queues could
    /// not be checked, `deadLettersUnchecked` (why) and, for a flow that looked complete,
    /// `status: "unknown"`.
    static func json(_ flow: EventFlow, deadLettersUnchecked unchecked: String?) -> JSONValue {
        let encoded = (try? WireJSON.encoder().encode(flow)).flatMap(JSONValue.parse) ?? .null
        guard let unchecked, case .object(var fields) = encoded else { return encoded }
        fields["deadLettersUnchecked"] = .string(unchecked)
        if flow.status == .complete { fields["status"] = .string("unknown") }
        return .object(fields)
    }

    /// The flow for people: a header, the problems, then one line per event as a tree:
    /// `time  type  service  +gap  id`. Every string from the store is escaped. A flow whose
    /// dead-letter queues could not be checked (`deadLettersUnchecked`, why) is never called
    /// complete: its outcome is unknown.
    static func lines(_ flow: EventFlow, deadLettersUnchecked unchecked: String? = nil) -> [String] {
        var lines: [String] = []
        let id = Terminal.escape(flow.correlationId)
        let events = "\(flow.count) event\(flow.count == 1 ? "" : "s")"
        switch flow.status {
        case .empty:
            return ["flow \(id): no events with this correlation id"]
        case .complete where unchecked != nil:
            lines.append("flow \(id): UNKNOWN, \(events): dead-letter queues could not be checked")
        case .complete:
            lines.append("flow \(id): complete, \(events)")
        case .stopped:
            lines.append("flow \(id): STOPPED HALF WAY, \(events)")
        }
        // `unchecked` is a CLIFailure message: escaped already.
        if let unchecked { lines.append("  ? dead-letter queues could not be checked: \(unchecked)") }
        for problem in flow.problems { lines.append("  ! \(Terminal.escape(problem))") }
        func walk(_ node: EventFlow.Node, prefix: String, connector: String) {
            let gap = node.gapMilliseconds.map { "+\($0) ms" } ?? "?"
            let source = node.source.map { Terminal.escape($0) } ?? "-"
            let mark = node.deadLetteredIn.map { "  !! in \($0.map { Terminal.escape($0) }.joined(separator: ", "))" } ?? ""
            lines.append(
                "\(Terminal.escape(node.recordedAt ?? node.timestamp))  \(prefix)\(connector)\(Terminal.escape(node.type))  from \(source)  \(gap)  \(Terminal.escape(node.id))\(mark)")
            let childPrefix = prefix + (connector == "└─ " ? "   " : connector.isEmpty ? "" : "│  ")
            for (index, child) in node.children.enumerated() {
                walk(child, prefix: childPrefix, connector: index == node.children.count - 1 ? "└─ " : "├─ ")
            }
        }
        for root in flow.events { walk(root, prefix: "", connector: "") }
        return lines
    }
}
