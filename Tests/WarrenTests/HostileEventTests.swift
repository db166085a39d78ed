import Foundation
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP

/// Events that used to kill a subscriber, loop in its queue or reach a handler that never asked
/// for them, against the real broker. After each, the next ordinary event is still handled.
@Suite("Hostile events", .timeLimit(.minutes(1)))
struct HostileEventTests {
    /// Handler: fails every event whose body is `{"n":0}`, records all.
    private static func failingOnZero(_ seen: Seen) -> EventSubscriber.Handler {
        { event in
            seen.append(event)
            if try event.decode(Happened.self).n == 0 { throw ServiceError.internal("handler fails on n = 0") }
        }
    }

    /// Publishes a normal event and waits for the handler to see it: the subscriber still serves.
    private func stillServes(_ service: String, _ publisher: EventPublisher, _ seen: Seen) async throws {
        let sent = try await publisher.publish("\(service).after", Happened(n: 42))
        try await waitUntil { seen.events.contains { $0.envelope.messageID == sent.messageID } }
    }

    @Test("an event with x-attempts = Int64.max and a failing handler is parked in the DLQ, and serving goes on")
    func attemptsMax() async throws {
        let seen = Seen()
        try await withSubscriber(handler: Self.failingOnZero(seen)) { service, publisher, channel in
            try await channel.enableConfirms()
            try await channel.publish(
                Data(#"{"n":0}"#.utf8), exchange: EventPublisher.exchange, routingKey: "\(service).payment.failed",
                properties: AMQPProperties(headers: [WireHeader.attempts: .int(Int64.max)], messageID: "max-attempts", type: "\(service).payment.failed"))
            let parked = try #require(try await pollGet(channel, queue: "\(service).events.dlq"))
            #expect(parked.properties.messageID == "max-attempts")
            #expect(parked.properties.headers?[WireHeader.attempts] == .int(Int64.max))
            #expect(parked.properties.headers?[WireHeader.error] == "handler fails on n = 0")
            try parked.ack()
            #expect(seen.events.filter { $0.envelope.messageID == "max-attempts" }.map(\.attempt) == [Int.max])
            try await stillServes(service, publisher, seen)
        }
    }

    @Test("near-frame headers and a failing handler: the copy cannot be published, so the broker dead-letters the event; no loop")
    func nearFrameHeaders() async throws {
        let seen = Seen()
        try await withSubscriber(handler: Self.failingOnZero(seen)) { service, publisher, channel in
            try await channel.enableConfirms()
            let type = "\(service).payment.failed"
            let messageID = "near-frame"
            // The content header as WireLimits counts it: as large as a 128 KiB frame allows,
            // less 5 bytes, so the original fits and the copy with x-error cannot.
            let fixed = 14 + (1 + messageID.utf8.count) + (1 + type.utf8.count) + 10 + 4 + (1 + 3 + 1 + 4)
            let padding = String(repeating: "p", count: 131_072 - 8 - fixed - 5)
            try await channel.publish(
                Data(#"{"n":0}"#.utf8), exchange: EventPublisher.exchange, routingKey: type,
                properties: AMQPProperties(headers: ["pad": .string(padding)], messageID: messageID, type: type))
            // In the DLQ through the broker (its x-death makes it too large to read back here).
            var parked: UInt32 = 0
            for _ in 0..<100 where parked == 0 {
                parked = try await channel.inspectQueue("\(service).events.dlq").messageCount
                if parked == 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(parked == 1)
            // Handled once, not requeued and handled again in a loop.
            try await Task.sleep(for: .milliseconds(500))
            #expect(seen.events.filter { $0.envelope.messageID == messageID }.count == 1)
            #expect(try await channel.inspectQueue("\(service).events").messageCount == 0)
            try await stillServes(service, publisher, seen)
        }
    }

    @Test("headers that leave the retry copy just room to fit: the broker's x-death would push it past a frame, so it is parked instead of looping",
          arguments: [200, 600, 1_500])
    func retryCopyWithoutRoomForXDeath(spare: Int) async throws {
        let seen = Seen()
        try await withSubscriber(handler: Self.failingOnZero(seen)) { service, publisher, channel in
            try await channel.enableConfirms()
            let type = "\(service).payment.failed"
            let messageID = "spare-\(spare)"
            let fixed = 14 + (1 + messageID.utf8.count) + (1 + type.utf8.count) + 10 + 4 + (1 + 3 + 1 + 4)
            let padding = String(repeating: "p", count: 131_072 - 8 - fixed - spare)
            try await channel.publish(
                Data(#"{"n":0}"#.utf8), exchange: EventPublisher.exchange, routingKey: type,
                properties: AMQPProperties(headers: ["pad": .string(padding)], messageID: messageID, type: type))
            var parked: UInt32 = 0
            for _ in 0..<100 where parked == 0 {
                parked = try await channel.inspectQueue("\(service).events.dlq").messageCount
                if parked == 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(parked == 1)
            try await Task.sleep(for: .milliseconds(800))
            #expect(seen.events.filter { $0.envelope.messageID == messageID }.count <= 3)
            #expect(try await channel.inspectQueue("\(service).events").messageCount == 0)
            try await stillServes(service, publisher, seen)
        }
    }

    @Test("the retry queue was deleted: the copy comes back unroutable, and the event reaches the DLQ through the broker instead of vanishing")
    func retryQueueDeleted() async throws {
        let seen = Seen()
        try await withSubscriber(handler: Self.failingOnZero(seen)) { service, publisher, channel in
            _ = try await channel.deleteQueue("\(service).events.retry.100ms")
            let sent = try await publisher.publish("\(service).thing.failed", Happened(n: 0))
            let parked = try #require(try await pollGet(channel, queue: "\(service).events.dlq"))
            #expect(parked.properties.messageID == sent.messageID)
            #expect(parked.properties.headers?["x-death"] != nil)
            try parked.ack()
            try await stillServes(service, publisher, seen)
        }
    }

    @Test("an event of a type the service does not subscribe to, sent straight to its queue, is parked and not handled",
          arguments: [
            (type: String?.some("order.cancelled"), original: String?.none),
            (type: nil, original: nil),
            (type: "order.cancelled", original: "order.cancelled"),
          ])
    func unsubscribedType(type: String?, original: String?) async throws {
        let seen = Seen()
        try await withSubscriber(handler: { seen.append($0) }) { service, publisher, channel in
            try await channel.enableConfirms()
            var headers: AMQPTable = [:]
            if let original { headers[WireHeader.originalRoutingKey] = .string(original) }
            try await channel.publish(
                Data(#"{"n":1}"#.utf8), routingKey: "\(service).events",
                properties: AMQPProperties(headers: headers, messageID: "stranger", type: type))
            let parked = try #require(try await pollGet(channel, queue: "\(service).events.dlq"))
            #expect(parked.properties.messageID == "stranger")
            let reason = parked.properties.headers?[WireHeader.error]?.stringValue ?? ""
            #expect(reason.contains(type.map { "'\($0)'" } ?? "no type"), "\(reason)")
            try parked.ack()
            try await stillServes(service, publisher, seen)
            #expect(!seen.events.contains { $0.envelope.messageID == "stranger" })
        }
    }

    @Test("a queue left by an older Warren without dead-lettering: the subscriber stops with an error naming it and what to do; /health shows it stopped")
    func oldQueueWithoutDeadLettering() async throws {
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        let service = "t\(UUID().uuidString.prefix(8).lowercased())"
        try await channel.declareQueue("\(service).events")  // as declared before, without arguments
        let subscriber = EventSubscriber(service: service, connection: connection, patterns: ["\(service).#"]) { _ in }
        do {
            try await subscriber.run()
            Issue.record("the subscriber ran on a queue with other arguments")
        } catch let error as QueueArgumentsMismatch {
            #expect(error.queue == "\(service).events")
            #expect(error.description.contains("delete_queue \(service).events"))
        }
        let status = ConsumerHealth.process.statuses().first { $0.queue == "\(service).events" }
        #expect(status?.state == .stopped)
        #expect(status?.detail?.contains("other arguments") == true)
        let cleanup = try await connection.openChannel()
        for queue in ["\(service).events", "\(service).events.dlq"] { _ = try? await cleanup.deleteQueue(queue) }
        await connection.close()
    }

    @Test("disagreeing type sources: through warren.events the routing key decides; straight in, x-original-routing-key decides")
    func disagreeingTypes() async throws {
        let seen = Seen()
        try await withSubscriber(handler: { seen.append($0) }) { service, _, channel in
            try await channel.enableConfirms()
            // Routed by a subscribed key, claiming another type: handled as the routing key.
            try await channel.publish(
                Data(#"{"n":1}"#.utf8), exchange: EventPublisher.exchange, routingKey: "\(service).thing.happened",
                properties: AMQPProperties(headers: [WireHeader.originalRoutingKey: "order.cancelled"], messageID: "routed", type: "order.cancelled"))
            // Straight in, as a retry comes back: the original routing key, not the AMQP type.
            try await channel.publish(
                Data(#"{"n":2}"#.utf8), routingKey: "\(service).events",
                properties: AMQPProperties(
                    headers: [WireHeader.originalRoutingKey: .string("\(service).thing.retried")], messageID: "retried", type: "order.cancelled"))
            try await waitUntil { seen.events.count == 2 }
            let types = Dictionary(uniqueKeysWithValues: seen.events.map { ($0.envelope.messageID, $0.type) })
            #expect(types["routed"] == "\(service).thing.happened")
            #expect(types["retried"] == "\(service).thing.retried")
        }
    }
}
