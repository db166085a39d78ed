import ArgumentParser
import Foundation
import Logging
import WarrenAMQP

/// `--url` / `AMQP_URL`: which broker, shared by every command.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The broker, amqp://user:password@host:port/vhost (a cluster: host1:port,host2:port).", discussion: "Default: AMQP_URL, else amqp://guest:guest@localhost:5672/."))
    var url: String?

    var amqpURL: String {
        url ?? ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"
    }

    func configuration(purpose: String) throws -> AMQPConfiguration {
        var configuration: AMQPConfiguration
        do {
            configuration = try AMQPConfiguration(url: amqpURL)
        } catch {
            throw CLIFailure.from(error)
        }
        configuration.connectionName = "warren \(purpose)"
        // A one-shot tool reports a lost broker instead of waiting for it to come back.
        configuration.recovery.isEnabled = false
        return configuration
    }

    func connect(purpose: String) async throws -> AMQPConnection {
        try await AMQPConnection.connect(configuration(purpose: purpose), logger: Logger(label: "warren.cli"))
    }
}

/// `--json`: one machine-readable document on stdout instead of text for people.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print JSON for scripts instead of text.")
    var json = false
}

/// A duration written as `500ms`, `5s`, `2m`, `1h`, `7d`, `2w`, or plain seconds.
///
/// Anything that is not a finite duration of at least a millisecond and at most `longest` is not
/// a duration here (nil: the parser reports the value as invalid for its option), so no later
/// arithmetic on it (a deadline, a time back from now) can overflow.
struct DurationArgument: ExpressibleByArgument, Sendable, CustomStringConvertible {
    /// A century: beyond any timeout or look-back anyone means, far inside what `Duration`,
    /// `Date` and epoch milliseconds in an `Int64` hold.
    static let longest: Duration = .seconds(100 * 365 * 86_400)

    let duration: Duration
    let description: String

    init(_ duration: Duration, description: String) {
        self.duration = duration
        self.description = description
    }

    init?(argument: String) {
        guard let milliseconds = Self.milliseconds(argument) else { return nil }
        self.init(.milliseconds(milliseconds), description: argument)
    }

    /// `argument` in whole milliseconds, or nil when it is not a duration from 1 ms to `longest`
    /// (NaN, infinities, negative, zero, too long, not a number).
    static func milliseconds(_ argument: String) -> Int64? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)]
        var seconds: Double?
        for (suffix, factor) in units where argument.hasSuffix(suffix) {
            if let number = Double(argument.dropLast(suffix.count)) {
                seconds = number * factor
                break
            }
        }
        if seconds == nil { seconds = Double(argument) }
        let longestMilliseconds = longest / .milliseconds(1)
        guard let seconds, seconds.isFinite, seconds > 0, seconds * 1000 <= longestMilliseconds else { return nil }
        guard let milliseconds = Int64(exactly: (seconds * 1000).rounded()), milliseconds >= 1 else { return nil }
        return milliseconds
    }

    /// A usage error naming `option` unless this duration is at most `maximum` (for durations
    /// that become deadlines: a reply nobody waits a day for).
    func check(_ option: String, atMost maximum: Duration, written: String) throws {
        guard duration <= maximum else {
            throw ValidationError("\(option) must be at most \(written) (it was \(description))")
        }
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Message bodies given as inline JSON, `@file`, or `-` for stdin.
enum MessageInput {
    static let help = "JSON inline, @file to read a file, or - for stdin."

    static func read(_ argument: String?, default fallback: String = "{}") throws -> Data {
        let data: Data
        let source: String
        switch argument {
        case nil:
            data = Data(fallback.utf8)
            source = "the default body"
        case "-":
            data = FileHandle.standardInput.readDataToEndOfFile()
            source = "stdin"
        case let argument? where argument.hasPrefix("@"):
            let path = String(argument.dropFirst())
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw CLIFailure(.usage, "cannot read \(path): check the path after @")
            }
            data = contents
            source = path
        case let argument?:
            data = Data(argument.utf8)
            source = "the body argument"
        }
        try checkJSON(data, source: source)
        return data
    }

    static func checkJSON(_ data: Data, source: String) throws {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed)
        } catch {
            throw CLIFailure(.usage, "\(source) is not valid JSON: quote it in single quotes in the shell, e.g. '{\"id\":\"42\"}'")
        }
    }
}
