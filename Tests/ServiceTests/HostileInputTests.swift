import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Issue 13's promise, end to end: a plain AMQP client sends every kind of hostile message to
/// every real service process and to `warren.events`; each message is answered or parked with a
/// reason, no process dies, no consumer wedges, and the next normal call succeeds.
@Suite("Hostile messages from a plain AMQP client against real service processes", .serialized, .timeLimit(.minutes(5)))
struct HostileInputTests {
    static let services = System.allServices + ["event-store", "warren-echo"]

    @Test("every hostile message is answered or parked, and every service keeps serving")
    func everyKindIsAnsweredOrParked() async throws {
        try await withSystem(Self.services) { system in
            let client = try await HostileClient.start(connection: system.connection)
            let messages = HostileCatalog.messages(replyTo: client.replyQueue)
            for message in messages { try client.send(message) }

            let unanswered = try await client.awaitReplies(messages, within: .seconds(60))
            #expect(unanswered.isEmpty, "no reply for: \(unanswered.prefix(20).map(\.name))")
            let executed = messages.filter { $0.fate == .refused && client.status($0.properties.correlationID ?? "") != "error" }
            #expect(executed.isEmpty, "not refused: \(executed.map(\.name))")

            try await expectParked(messages, client: client)
            try await expectServing(system)
        }
    }

    /// Every message whose fate is a dead-letter queue is there, with a reason.
    private func expectParked(_ messages: [HostileMessage], client: HostileClient) async throws {
        var byQueue: [String: [HostileMessage]] = [:]
        for message in messages { if case .parked(let queue) = message.fate { byQueue[queue, default: []].append(message) } }
        for (queue, expected) in byQueue {
            var parked: [String: String] = [:]
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline {
                parked.merge(try await client.drain(queue)) { first, _ in first }
                if expected.allSatisfy({ parked[$0.messageID] != nil }) { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            let missing = expected.filter { parked[$0.messageID] == nil }
            #expect(missing.isEmpty, "\(missing.count) of \(expected.count) not in \(queue), e.g. \(missing.prefix(5).map(\.name))")
            let reasonless = expected.filter { parked[$0.messageID]?.isEmpty == true }
            #expect(reasonless.isEmpty, "parked in \(queue) without a reason: \(reasonless.prefix(5).map(\.name))")
        }
    }

    /// Every process still runs, reports healthy, and answers a normal call; the saga still
    /// runs from an order to its confirmation.
    private func expectServing(_ system: System) async throws {
        for service in Self.services {
            let process = try #require(system.process(service))
            #expect(process.isRunning, "\(service) died:\n\(process.log.suffix(4_000))")
            let (status, body) = try await health(port: process.port)
            #expect(status == 200, "\(service) /health: \(status) \(body)")
        }
        let echo = try await system.call("echo.echo", ["text": "still here"])
        #expect(echo.string("text") == "still here", "\(echo.json)")
        let events = try await system.call("events.query", ["limit": 1])
        #expect(!events.isError, "\(events.json)")

        let userID = try await newUser(system)
        let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
        let orderID = try #require(created.string("id"), "\(created.json)")
        let confirmed = try await system.eventually("orders.get", ["id": orderID], within: .seconds(30)) { $0.string("status") == "confirmed" }
        #expect(confirmed.string("status") == "confirmed", "\(confirmed.json)")
    }

    private func health(port: Int) async throws -> (Int, String) {
        try await get("/health", port: port)
    }
}

/// GET `path` on a service's HTTP port: (status, body).
func get(_ path: String, port: Int) async throws -> (Int, String) {
    guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { return (0, "") }
    let (data, response) = try await URLSession.shared.data(from: url)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// The requests a service process has handled (answered or parked), from its `/metrics`: the
/// sum of `warren_requests_total` over every operation and outcome.
func handledRequests(port: Int) async throws -> Int {
    let (_, text) = try await get("/metrics", port: port)
    return text.split(separator: "\n")
        .filter { $0.hasPrefix("warren_requests_total") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        .reduce(0) { $0 + Int($1) }
}
