import ArgumentParser
import Foundation
import Warren
import WarrenAMQP
import WarrenContract

/// `warren call`: one RPC, the way another service would make it.
struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call a service operation and print its reply.",
        discussion: """
            The operation's prefix names the service: users.get goes to the queue
            users.rpc. The reply body is printed as indented JSON, or as it came with
            --json. An error reply prints its code and message on stderr and exits 1 (with
            --json, also {"error":{"code","message"}} on stdout); a message longer than 2,000
            characters is cut, with a marker saying how much was left out. No reply in time
            exits 4.

            Examples:
              warren call users.get '{"id":"6f1c2a9e-…"}'
              warren call orders.create @order.json --timeout 10s --correlation-id s-4711
              echo '{"text":"hi"}' | warren call echo.echo - --json | jq .text
            """
    )

    @Argument(help: "The operation, <service>.<name>, e.g. users.get.")
    var operation: String

    @Argument(help: ArgumentHelp("The request body: \(MessageInput.help) Default {}.", valueName: "json|@file|-"))
    var body: String?

    @Option(help: "How long to wait for the reply: 500ms, 5s, 1m (1ms…24h).")
    var timeout = DurationArgument(.seconds(5), description: "5s")

    @Option(
        name: .customLong("header"),
        help: ArgumentHelp(
            "A header to send, key=value (repeatable). x-correlation-id, x-causation-id, x-aggregate-id: 1 to 255 bytes; traceparent: W3C; x-deadline: use --timeout; headers Warren writes (x-status, x-error, …) are refused.",
            valueName: "key=value"))
    var headers: [String] = []

    @Option(name: .customLong("correlation-id"), help: "The flow's correlation id (header x-correlation-id), to find the call in the services' logs.")
    var correlationID: String?

    @Option(
        name: .customLong("message-id"),
        help: """
            The request's AMQP message_id (default: a new UUID). A command (users.create, orders.create, …) runs once per             message_id: after a timeout, call again with the same id to learn its outcome without running it twice.
            """)
    var messageID: String?

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        let parts = operation.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.allSatisfy({ !$0.isEmpty }) else {
            throw ValidationError("'\(operation)' is not an operation: write <service>.<name>, e.g. users.get")
        }
        // The RPC client turns the timeout into a deadline in epoch milliseconds and an AMQP
        // expiration: a day keeps both far inside their range.
        try timeout.check("--timeout", atMost: .seconds(86_400), written: "24h")
        if let messageID { try HeaderOptions.checkID(messageID, "--message-id") }
        _ = try HeaderOptions(headers, for: .call, correlationID: correlationID)
    }

    func run() async throws {
        try await reportingFailures {
            let body = try MessageInput.read(self.body)
            let requestID = messageID ?? UUID().uuidString.lowercased()
            let headers = try HeaderOptions(self.headers, for: .call, correlationID: correlationID)
            let connection = try await connection.connect(purpose: "call \(operation)")
            let rpc = try await RPCClient.start(connection: connection)
            // Keeps the calls' deadlines for this scope (cancelled at its end).
            async let _ = rpc.run()
            let result: Result<RPCClient.Reply, ServiceError>
            do throws(ServiceError) {
                let envelope = Envelope(messageID: requestID, correlationID: headers.correlationID, headers: headers.headers)
                result = .success(try await rpc.call(operation, body: body, timeout: timeout.duration, envelope: envelope))
            } catch {
                result = .failure(error)
            }
            await rpc.close()
            await connection.close()
            try report(result, messageID: requestID)
        }
    }

    private func report(_ result: Result<RPCClient.Reply, ServiceError>, messageID: String) throws {
        let queue = RPCClient.queue(for: operation)
        let reply: RPCClient.Reply
        switch result {
        case .success(let value):
            reply = value
        case .failure(let error) where error.code == .timeout:
            throw CLIFailure(
                .timeout,
                "no reply from \(queue) within \(timeout) (\(error.message)): the outcome is unknown. Is the service running and healthy? "
                    + "`warren topology` shows who consumes \(queue); --timeout waits longer; a command called again with "
                    + "--message-id \(Terminal.escape(messageID)) runs at most once")
        case .failure(let error) where error.code == .unavailable:
            throw CLIFailure(.failed, "\(operation) is unavailable: \(Terminal.escape(error.message)). Start the service (`make run`) and check `warren topology`")
        case .failure(let error):
            throw CLIFailure.from(error)
        }
        if reply.isError {
            // Scripts get the error document, people its code and message: the same error,
            // read as every Warren caller reads it (its message cut to
            // `ErrorReply.maxMessageLength` with a marker; a body not in the error format is
            // `internal`), never a service's megabytes.
            let error = reply.serviceError(operation: operation)
            if output.json { Terminal.outRaw(ErrorReply(error: error).body + Data("\n".utf8)) }
            throw CLIFailure(.failed, "\(operation) replied \(error.code.rawValue): \(Terminal.escape(error.message))")
        }
        if output.json {
            Terminal.outRaw(reply.body + Data("\n".utf8))
        } else if let value = JSONValue.parse(reply.body) {
            // Pretty JSON escapes C0 controls in strings itself; C1 and bidi controls `out` escapes.
            Terminal.out(value.jsonText(pretty: true))
        } else {
            // Not JSON: shown as text, its line breaks kept, everything else a terminal acts on escaped.
            Terminal.out(String(decoding: reply.body, as: UTF8.self))
        }
    }
}
