import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// The load round's flood (`make test`, last round): 10,000 hostile messages of every kind in
/// `HostileCatalog`, to every service queue and to `warren.events`, while normal calls go on.
/// Prints the accounting and the normal calls' latency, and fails on a crash, a wedged consumer
/// or a message that ended nowhere.
@Suite("A flood of hostile messages while normal calls go on", .serialized, .timeLimit(.minutes(10)))
struct HostileFloodTests {
    static let total = 10_000

    @Test("10,000 hostile messages: no crash, no wedged consumer, every message accounted for")
    func flood() async throws {
        try await withSystem(HostileInputTests.services) { system in
            let client = try await HostileClient.start(connection: system.connection)
            // Each kind once per round; the copies that exist to exhaust a consumer's prefetch
            // are left to the flood's own volume.
            var messages: [HostileMessage] = []
            while messages.count < Self.total {
                let round = HostileCatalog.messages(replyTo: client.replyQueue).filter { !$0.name.contains("#") || $0.name.hasSuffix("#0") }
                messages += round.prefix(Self.total - messages.count)
            }

            var handledBefore = 0
            for service in HostileInputTests.services {
                if let process = system.process(service) { handledBefore += try await handledRequests(port: process.port) }
            }
            let normal = NormalTraffic()
            let background = Task { try await normal.run(system) }
            let started = ContinuousClock.now
            for message in messages { try client.send(message) }

            let unanswered = try await client.awaitReplies(messages, within: .seconds(240))
            var parkedIDs = Set<String>()
            var expectedParked: [String: Set<String>] = [:]
            for message in messages { if case .parked(let queue) = message.fate { expectedParked[queue, default: []].insert(message.messageID) } }
            let deadline = ContinuousClock.now + .seconds(120)
            for (queue, expected) in expectedParked {
                var found = Set<String>()
                while !expected.isSubset(of: found), ContinuousClock.now < deadline {
                    found.formUnion(try await client.drain(queue).keys)
                    try await Task.sleep(for: .milliseconds(200))
                }
                parkedIDs.formUnion(found.intersection(expected))
            }
            // Every service queue drained: each delivery ended (acked, rejected or answered).
            var queuesLeft: [String: UInt32] = [:]
            for queue in HostileCatalog.operations.map(\.queue) + ["payments.events", "orders.events", "events.events"] {
                var depth = try await client.inspection.inspectQueue(queue).messageCount
                let queueDeadline = ContinuousClock.now + .seconds(60)
                while depth > 0, ContinuousClock.now < queueDeadline {
                    try await Task.sleep(for: .milliseconds(250))
                    depth = try await client.inspection.inspectQueue(queue).messageCount
                }
                if depth > 0 { queuesLeft[queue] = depth }
            }
            let elapsed = ContinuousClock.now - started
            normal.stop()
            let latencies = try await background.value
            // Every request that reached a service queue was handled by it: answered (to a
            // reply_to that may lead nowhere) or parked. The services count them in /metrics.
            let sentRequests = messages.filter { $0.exchange.isEmpty && $0.routingKey.hasSuffix(".rpc") }.count + normal.started
            var handled = 0
            let countDeadline = ContinuousClock.now + .seconds(30)
            repeat {
                handled = -handledBefore
                for service in HostileInputTests.services {
                    if let process = system.process(service) { handled += try await handledRequests(port: process.port) }
                }
                if handled >= sentRequests { break }
                try await Task.sleep(for: .milliseconds(250))
            } while ContinuousClock.now < countDeadline

            let replied = messages.filter { $0.fate == .replied || $0.fate == .refused }.count
            let parked = messages.filter { if case .parked = $0.fate { true } else { false } }.count
            let survivors = messages.count - replied - parked
            let crashed = HostileInputTests.services.filter { system.process($0)?.isRunning != true }
            print(
                """
                hostile flood: sent \(messages.count) in \(elapsed); \
                replies \(replied - unanswered.count)/\(replied), dead letters \(parkedIDs.count)/\(parked), \
                answered to a reply_to that leads nowhere \(survivors); \
                requests to service queues \(sentRequests) (with \(normal.started) normal calls), handled by the services \(handled); \
                crashed processes \(crashed.count), queues not drained \(queuesLeft); \
                normal calls \(latencies.count), failed \(normal.failures), p50 \(percentile(latencies, 0.5)) ms, p99 \(percentile(latencies, 0.99)) ms
                """)

            #expect(crashed.isEmpty, "crashed: \(crashed)")
            #expect(unanswered.isEmpty, "\(unanswered.count) requests never answered, e.g. \(unanswered.prefix(5).map(\.name))")
            #expect(parkedIDs.count == parked, "\(parked - parkedIDs.count) messages not in their dead-letter queue")
            #expect(queuesLeft.isEmpty, "queues not drained (a wedged consumer): \(queuesLeft)")
            #expect(handled == sentRequests, "requests sent to service queues \(sentRequests), handled \(handled)")
            #expect(latencies.count > 0 && normal.failures == 0, "normal calls failed during the flood: \(normal.failureReasons)")
            let after = try await system.call("echo.echo", ["text": "after the flood"])
            #expect(after.string("text") == "after the flood")
        }
    }

    private func percentile(_ values: [Double], _ p: Double) -> String {
        guard !values.isEmpty else { return "-" }
        let sorted = values.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))
        return String(format: "%.1f", sorted[index])
    }
}

/// Normal calls, one after another, until stopped: their latencies in milliseconds.
final class NormalTraffic: Sendable {
    private let failureList = Mutex<[String]>([])
    private let startedCount = Mutex(0)
    /// Calls that failed, each as its error; a flood queues normal calls behind thousands of
    /// hostile ones, so each may wait `timeout`.
    var failureReasons: [String] { failureList.withLock { $0 } }
    var failures: Int { failureReasons.count }
    let timeout = Duration.seconds(60)
    private let stopRequested = Mutex(false)
    /// Calls sent.
    var started: Int { startedCount.withLock { $0 } }

    /// Ends `run` after the call in flight, if any, has its answer.
    func stop() { stopRequested.withLock { $0 = true } }

    func run(_ system: System) async throws -> [Double] {
        var latencies: [Double] = []
        var turn = 0
        while !stopRequested.withLock({ $0 }) {
            let started = ContinuousClock.now
            startedCount.withLock { $0 += 1 }
            do {
                let (operation, body) = turn % 2 == 0 ? ("echo.echo", #"{"text":"normal"}"#) : ("events.query", #"{"limit":1}"#)
                let reply = try await system.rpc.call(operation, body: Data(body.utf8), timeout: timeout)
                if reply.isError { failureList.withLock { $0.append("\(operation): \(String(decoding: reply.body, as: UTF8.self))") } }
            } catch {
                failureList.withLock { $0.append("\(error)") }
            }
            let elapsed = ContinuousClock.now - started
            latencies.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1_000)
            turn += 1
            try? await Task.sleep(for: .milliseconds(20))
        }
        return latencies
    }
}
