import ArgumentParser
import Foundation
import WarrenAMQP

/// `warren-bench amqp`: the same three workloads through WarrenAMQP and through the C program
/// `bench/amqp_bench.c` (raw librabbitmq), one after the other in the same run.
struct AMQPBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "amqp",
        abstract: "Request/reply, confirmed publish and acked consume: WarrenAMQP against raw librabbitmq.",
        discussion: """
            Cases: rpc with 1, 16 and 64 requests in flight (a queue and direct reply-to), publish
            of persistent messages with confirms, consume with ack at prefetch 256.
            Example: make bench, or
              warren-bench amqp --json --c-program .build/amqp-bench-c
            """
    )

    @Option(help: "Broker URL.")
    var url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"

    @Option(help: "Seconds measured per rpc case, after a 1 s warm-up.")
    var seconds = 5.0

    @Option(help: "Messages for the publish and consume cases.")
    var messages = 100_000

    @Option(help: "Path of the compiled C baseline; without it only Swift runs.")
    var cProgram: String?

    @Flag(help: "Print one JSON array, an object per case with swift, c and ratio.")
    var json = false

    @Option(help: "Run only the cases whose name starts with this (e.g. rpc_inflight_64).")
    var only: String?

    private func selected(_ name: String) -> Bool { only.map { name.hasPrefix($0) } ?? true }

    func run() async throws {
        WarrenBench.bootstrapLogging()
        var results: [CaseResult] = []
        for inflight in [1, 16, 64] where selected("rpc_inflight_\(inflight)") {
            let c = try cProgram.map { try runC($0, ["rpc", "--inflight", "\(inflight)", "--seconds", "\(seconds)"]) }
            let swift = try await RPCWorkload(url: url, inflight: inflight, seconds: seconds).run()
            results.append(CaseResult(name: "rpc_inflight_\(inflight)", rateKey: "requests_per_sec", swift: swift, c: c))
            report(results.last)
        }
        if selected("publish_confirms") {
        let cPublish = try cProgram.map { try runC($0, ["publish", "--messages", "\(messages)", "--window", "1000"]) }
        let swiftPublish = try await PublishWorkload(url: url, messages: messages, window: 1000).run()
        results.append(CaseResult(name: "publish_confirms", rateKey: "messages_per_sec", swift: swiftPublish, c: cPublish))
        report(results.last)
        }

        if selected("consume_ack_prefetch_256") {
        let cConsume = try cProgram.map { try runC($0, ["consume", "--messages", "\(messages)", "--prefetch", "256"]) }
        let swiftConsume = try await ConsumeWorkload(url: url, messages: messages, prefetch: 256).run()
        results.append(CaseResult(name: "consume_ack_prefetch_256", rateKey: "messages_per_sec", swift: swiftConsume, c: cConsume))
        report(results.last)
        }

        if json {
            let data = try JSONSerialization.data(withJSONObject: results.map(\.json), options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    private func report(_ result: CaseResult?) {
        guard let result, !json else { return }
        print(result.line)
    }

    private func runC(_ program: String, _ arguments: [String]) throws -> [String: Double] {
        try WarrenBench.runC(program, arguments, url: url)
    }
}

/// One case: the Swift and C measurements and their ratio on the case's rate.
struct CaseResult {
    let name: String
    let rateKey: String
    let swift: [String: Double]
    let c: [String: Double]?

    var ratio: Double? {
        guard let c, let cRate = c[rateKey], cRate > 0, let swiftRate = swift[rateKey] else { return nil }
        return (swiftRate / cRate * 1000).rounded() / 1000
    }

    var json: [String: Any] {
        var object: [String: Any] = ["case": name, "swift": swift]
        if let c { object["c"] = c.filter { $0.key != "count" && $0.key != "inflight" && $0.key != "messages" && $0.key != "prefetch" } }
        if let ratio { object["ratio"] = ratio }
        return object
    }

    var line: String {
        func describe(_ values: [String: Double]?) -> String {
            guard let values else { return "-" }
            var parts = [String(format: "%.0f/s", values[rateKey] ?? 0)]
            if let p50 = values["p50_ms"], let p99 = values["p99_ms"] { parts.append(String(format: "p50 %.2f ms p99 %.2f ms", p50, p99)) }
            return parts.joined(separator: " ")
        }
        let ratioText = ratio.map { String(format: "%.2f×", $0) } ?? "-"
        return "\(name.padding(toLength: 26, withPad: " ", startingAt: 0)) swift \(describe(swift))  c \(describe(c))  ratio \(ratioText)"
    }
}

/// A body of the same size as the C program's.
let benchBody = Data(repeating: UInt8(ascii: "x"), count: 100)

func benchQueueName(_ kind: String) -> String {
    "bench.\(kind).swift.\(ProcessInfo.processInfo.processIdentifier)"
}
