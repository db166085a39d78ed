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

    /// Events and calls that must be refused before anything is sent, with what the first line
    /// of the error must name: ids as their flag twins check them, event types as the contract
    /// (`EventType`) allows, headers with a meaning in the contract in its form.
    static let long = String(repeating: "c", count: 300)
    static let hostileTypes: [String] = [
        "", "#", "*", "order.*", "order.#", "a b", "Order.created", "order", "order.", ".created", "order..created", "order.créé",
        "order.created." + String(repeating: "a", count: 242),
    ]
    static let hostileIDs: [(arguments: [String], names: String)] = [
            (["publish", "order.created", "--message-id", ""], "--message-id"),
            (["publish", "order.created", "--message-id", String(repeating: "i", count: 256)], "--message-id"),
            (["call", "users.get", "--message-id", ""], "--message-id"),
            (["publish", "order.created", "--correlation-id", long], "--correlation-id"),
            (["publish", "order.created", "--correlation-id", ""], "--correlation-id"),
            (["call", "users.get", "--correlation-id", long], "--correlation-id"),
        ]
    static func hostileHeaders(_ command: [String]) -> [(arguments: [String], names: String)] {
            [
                (command + ["--header", "x-correlation-id=\(long)"], "x-correlation-id"),
                (command + ["--header", "x-correlation-id="], "x-correlation-id"),
                (command + ["--header", "x-correlation-id=a", "--correlation-id", "b"], "x-correlation-id"),
                (command + ["--header", "x-correlation-id=a", "--header", "x-correlation-id=b"], "x-correlation-id"),
                (command + ["--header", "x-causation-id=\(long)"], "x-causation-id"),
                (command + ["--header", "x-causation-id="], "x-causation-id"),
                (command + ["--header", "x-aggregate-id=\(long)"], "x-aggregate-id"),
                (command + ["--header", "x-deadline=1"], "x-deadline"),
                (command + ["--header", "x-deadline=9999999999999999999999"], "x-deadline"),
                (command + ["--header", "traceparent=garbage"], "traceparent"),
                (command + ["--header", "traceparent=00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"], "traceparent"),
                (command + ["--header", "tracestate=\(String(repeating: "t", count: 513))"], "tracestate"),
                (command + ["--header", "X-Correlation-Id=abc"], "X-Correlation-Id"),
                (command + ["--header", "x-status=ok"], "x-status"),
                (command + ["--header", "x-error=boom"], "x-error"),
                (command + ["--header", "x-attempts=1"], "x-attempts"),
                (command + ["--header", "x-original-routing-key=payment.failed"], "x-original-routing-key"),
                (command + ["--header", "x-replayed=true"], "x-replayed"),
                (command + ["--header", "x-death=a"], "x-death"),
                (command + ["--header", "x-delivery-count=5"], "x-delivery-count"),
                (command + ["--header", "x-first-death-reason=rejected"], "x-first-death-reason"),
                (command + ["--header", "x-last-death-queue=q"], "x-last-death-queue"),
                (command + ["--header", "x-received-from=x"], "x-received-from"),
                (command + ["--header", "X-Death=a"], "X-Death"),
                (command + ["--header", "x-tenant=a", "--header", "x-tenant=b"], "x-tenant"),
                (command + ["--header", "\(String(repeating: "h", count: 256))=1"], "header name"),
                (command + ["--header", "=1"], "key=value"),
            ]
    }
    static let hostileMessages: [(arguments: [String], names: String)] =
        hostileTypes.map { (["publish", $0], "event type") } + hostileIDs + hostileHeaders(["publish", "order.created"])
        + hostileHeaders(["call", "users.get"])

    @Test("an event or call the contract does not allow is a usage error naming what is wrong, exit 2, nothing sent", arguments: hostileMessages.indices)
    func refusedMessage(_ index: Int) async throws {
        let example = Self.hostileMessages[index]
        let result = try await WarrenCLI.run(example.arguments, url: Self.deadBroker)
        #expect(!result.signalled, "\(result)")
        #expect(result.status == 2, "\(example.arguments.prefix(4)): \(result)")
        #expect(result.stderr.split(separator: "\n").first?.contains(example.names) == true, "\(example.arguments.prefix(4)): \(result)")
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
        ["publish", "order.created", "--header", "x-correlation-id=\(String(repeating: "c", count: 255))", "--header", "x-causation-id=c",
         "--header", "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "--header", "x-tenant=acme"],
        ["publish", "order.item-added.v2", "--correlation-id", "s-1", "--header", "x-correlation-id=s-1", "--message-id", "m"],
        ["call", "users.get", "--header", "x-aggregate-id=a", "--header", "tracestate=k=v"],
    ])
    func allowed(_ arguments: [String]) async throws {
        let result = try await WarrenCLI.run(arguments, url: Self.deadBroker)
        #expect(!result.signalled, "\(result)")
        #expect(result.status == 3, "\(result)")
    }
}
