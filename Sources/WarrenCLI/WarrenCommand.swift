import ArgumentParser
import Foundation
import Logging
import Warren

/// `warren`: the operator's way into a running Warren system, straight through the broker.
@main
struct WarrenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren",
        abstract: "Call, publish, replay and inspect Warren services through RabbitMQ.",
        discussion: """
            Examples:
              warren call users.get '{"id":"6f1c…"}'
              warren publish order.created @order.json
              warren replay --type 'order.*' --since 2h --to payments --dry-run
              warren events tail --type 'payment.*'
              warren flow 4f0c6f7e-1b1e-4c55-9a57-0b6f0e8f3c1d
              warren dlq list
              warren topology

            The broker is AMQP_URL or --url (default amqp://guest:guest@localhost:5672/).
            dlq list and requeue, topology, replay --to and publish --queue also read
            RabbitMQ's management API: WARREN_MANAGEMENT_URL or --management-url
            (default http://localhost:15672), as the user and password in that URL if it
            has them (http://user:password@host:15672), else those of the AMQP URL, and
            always in the AMQP URL's vhost; a whole answer within --management-timeout
            (default 10s). Every command takes --json for output that scripts can parse.
            LOG_LEVEL (default warning) sets what the AMQP client logs to stderr.

            Exit codes:
              0  success
              1  the service replied with an error (or none could answer),
                 or the broker refused the operation, also in part (replay skipped
                 events it could not publish, dlq requeue left some in place)
              2  usage error: a bad option, argument or JSON body
              3  the broker (or its management API) is unreachable
              4  timeout: no reply in time
              5  could not find out: part of a check could not be done (flow: the
                 dead-letter queues could not be read), so the outcome is unknown

            Shell completion: warren --generate-completion-script bash|zsh|fish
            """,
        version: WarrenVersion.string,
        subcommands: [
            CallCommand.self, PublishCommand.self, ReplayCommand.self, EventsCommand.self, FlowCommand.self, DLQCommand.self,
            TopologyCommand.self,
        ]
    )

    /// Logs (from the AMQP client) go to stderr so that stdout carries only results.
    static func main() async {
        let level = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        // Swift would repair invalid UTF-8 to U+FFFD, and the repaired name could match a queue
        // whose bytes differ: such an argument is refused before anything reads it.
        if let position = firstArgumentNotUTF8() {
            Terminal.note("Error: argument \(position) is not valid UTF-8 (\(shownBytes(of: position))): it cannot name a queue, type or id exactly\nUsage: warren --help")
            Foundation.exit(CLIFailure.Kind.usage.rawValue)
        }
        do {
            var command = try parseAsRoot()
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            // The parser's usage errors exit 64 (EX_USAGE); Warren documents 2 for them.
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            Terminal.note(fullMessage(for: error))
            Foundation.exit(CLIFailure.Kind.usage.rawValue)
        }
    }

    /// The position (1 = the first after `warren`) of the first argument whose raw bytes are not
    /// valid UTF-8, or nil.
    static func firstArgumentNotUTF8() -> Int? {
        let argv = CommandLine.unsafeArgv
        for position in stride(from: 1, to: Int(CommandLine.argc), by: 1) {
            guard let pointer = argv[position] else { continue }
            if String(validatingCString: pointer) == nil { return position }
        }
        return nil
    }

    /// Argument `position` as printable ASCII, every other byte as `\xFF`.
    static func shownBytes(of position: Int) -> String {
        guard let pointer = CommandLine.unsafeArgv[position] else { return "" }
        let bytes = UnsafeBufferPointer(start: pointer, count: strlen(pointer)).map { UInt8(bitPattern: $0) }
        return bytes.map { (0x20..<0x7F).contains($0) && $0 != 0x5C ? String(UnicodeScalar($0)) : "\\x" + ($0 < 0x10 ? "0" : "") + String($0, radix: 16, uppercase: true) }.joined()
    }
}
