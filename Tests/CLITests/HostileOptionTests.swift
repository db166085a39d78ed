// Numbers from the command line, run through the real `warren` binary: every hostile value is a
// usage error naming its option (exit 2), never a trap (a signal) and never a connection attempt.
import Foundation
import Testing

/// One command line with one hostile value, and the option the error must name.
struct HostileOption: Sendable, CustomTestStringConvertible {
    let arguments: [String]
    let option: String

    var testDescription: String { arguments.joined(separator: " ") }

    static func cases(_ command: [String], _ option: String, _ values: [String]) -> [HostileOption] {
        values.flatMap { value in
            // Both spellings: `--opt value` (a leading - may read as an option) and `--opt=value`.
            [HostileOption(arguments: command + [option, value], option: option), HostileOption(arguments: command + ["\(option)=\(value)"], option: option)]
        }
    }

    static let notNumbers = ["nan", "NaN", "-nan", "inf", "-inf", "infinity", "", "abc", "0x", "1e", "--", "١٢"]
    static let durations = notNumbers + [
        "-5s", "0", "0s", "0ms", "0.0001ms", "0.4ms", "1e300", "1e300s", "1e400", "1e17", "9223372036854775807ms",
        "9223372036854775808", "1e19ms", "5y", "3.2e9", "1e-320s", "nans", "infs", "-0s",
    ]

    static let all: [HostileOption] =
        cases(["replay"], "--rate", notNumbers + ["-1", "0", "-0", "1e-300", "5e-324", "0.0009", "1e400", "-1e400"])
        + cases(["replay"], "--limit", notNumbers + ["0", "-1", "1.5", "1e3", "9223372036854775808", "99999999999999999999", "-9223372036854775809"])
        + cases(["replay"], "--page-size", ["0", "-1", "1001", "9223372036854775807", "99999999999999999999", "nan"])
        + cases(["replay"], "--window", ["0", "-1", "65536", "9223372036854775807", "99999999999999999999", "1e3"])
        + cases(["replay"], "--timeout", durations + ["2h", "3601s"])
        + cases(["replay"], "--since", durations + ["5300w", "36501d"])
        + cases(["replay"], "--until", durations)
        + cases(["call", "users.get"], "--timeout", durations + ["25h", "1441m", "86401"])
        + cases(["dlq", "show", "payments"], "--limit", notNumbers + ["0", "-1", "10001", "1e4", "9223372036854775808", "99999999999999999999"])
}

@Suite("hostile numbers on the command line", .timeLimit(.minutes(5)))
struct HostileOptionTests {
    /// Nobody listens here: a value that got past validation would exit 3 (unreachable), not 2.
    static let deadBroker = "amqp://guest:guest@127.0.0.1:1/"

    @Test("a hostile number is a usage error that names the option, exit 2, never a trap", arguments: HostileOption.all)
    func refused(_ example: HostileOption) async throws {
        let result = try await WarrenCLI.run(example.arguments, url: Self.deadBroker)
        #expect(!result.signalled, "\(result)")
        #expect(result.status == 2, "\(result)")
        // The first line, the error itself: the usage lines below it name every option.
        #expect(result.stderr.split(separator: "\n").first?.contains(example.option) == true, "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
    }

    @Test("an argument that names nothing is a usage error, exit 2, before any connection", arguments: [
        ["dlq", "show", ""], ["dlq", "show", ".dlq"], ["dlq", "requeue", ".events.dlq", "--all"], ["dlq", "purge", "", "--yes"],
        ["dlq", "show", ".rpc"], ["dlq", "requeue", ".events", "--all"], ["dlq", "show", "payments.events.retry.5000ms"],
        ["dlq", "purge", "payments.events.retry.1ms", "--yes"], ["dlq", "requeue", ".events.retry.5000ms", "--all"],
        ["events", "tail", "--type", ""], ["events", "tail", "--type", "order.*", "--type", ""],
    ])
    func namesNothing(_ arguments: [String]) async throws {
        let result = try await WarrenCLI.run(arguments, url: Self.deadBroker)
        #expect(!result.signalled, "\(result)")
        #expect(result.status == 2, "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
    }

    /// Arguments that are not valid UTF-8, for every command: Swift would repair them to U+FFFD
    /// (`\xFF.rpc.dlq` would match `\u{FFFD}.rpc.dlq`), so each is refused, named by position.
    static let argumentsNotUTF8: [(arguments: [[UInt8]], position: Int)] = [
        ([Array("dlq".utf8), Array("purge".utf8), [0xFF] + Array(".rpc.dlq".utf8), Array("--yes".utf8)], 3),
        ([Array("dlq".utf8), Array("show".utf8), Array("users".utf8) + [0xC3]], 3),
        ([Array("dlq".utf8), Array("requeue".utf8), Array("payments".utf8), Array("--id".utf8), [0xED, 0xA0, 0x80]], 5),
        ([Array("call".utf8), Array("users.get".utf8), Array(#"{"id":""#.utf8) + [0xC0, 0xAF] + Array(#""}"#.utf8)], 3),
        ([Array("publish".utf8), [0x80] + Array("order.created".utf8), Array("{}".utf8)], 2),
        ([Array("events".utf8), Array("tail".utf8), Array("--type".utf8), Array("order.".utf8) + [0xF8, 0x88, 0x80, 0x80, 0x80]], 4),
        ([[0xFE], Array("topology".utf8)], 1),
        ([Array("topology".utf8), Array("--url=amqp://guest:".utf8) + [0xFF] + Array("@localhost/".utf8)], 2),
    ]

    @Test("an argument that is not valid UTF-8 is a usage error naming its position, exit 2, for every command", arguments: argumentsNotUTF8.indices)
    func refusedNotUTF8(_ index: Int) async throws {
        let example = Self.argumentsNotUTF8[index]
        let result = try await WarrenCLI.run(bytes: example.arguments, url: Self.deadBroker)
        #expect(!result.signalled, "\(result)")
        #expect(result.status == 2, "\(result)")
        #expect(result.stderr.split(separator: "\n").first?.contains("argument \(example.position) is not valid UTF-8") == true, "\(result)")
        #expect(result.stdout.isEmpty, "\(result)")
    }

    @Test("the extremes that are allowed pass validation (and then find no broker: exit 3)", arguments: [
        ["replay", "--rate", "0.001"], ["replay", "--rate", "1e308"], ["replay", "--limit", "9223372036854775807"],
        ["replay", "--timeout", "1h"], ["replay", "--timeout", "1ms"], ["replay", "--since", "5200w"], ["replay", "--since", "36500d"],
        ["call", "users.get", "--timeout", "24h"], ["call", "users.get", "--timeout", "0.5ms"],
        ["dlq", "show", "payments", "--limit", "10000"],
    ])
    func allowed(_ arguments: [String]) async throws {
        let result = try await WarrenCLI.run(arguments, url: Self.deadBroker)
        #expect(!result.signalled, "\(result)")
        #expect(result.status == 3, "\(result)")
    }
}
