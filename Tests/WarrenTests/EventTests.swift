import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP

struct Happened: Codable, Sendable {
    var n: Int
}

/// A subscriber for a uniquely named service, run in a ServiceGroup, cleaned up after.
func withSubscriber(
    name: String = #function, processed: (any ProcessedMessages)? = nil,
    handler: @escaping EventSubscriber.Handler,
    _ body: (_ service: String, _ publisher: EventPublisher, _ channel: AMQPChannel) async throws -> Void
) async throws {
    let connection = try await Broker.connect(name: name)
    let service = "t\(UUID().uuidString.prefix(8).lowercased())"
    let delays: [Duration] = [.milliseconds(100), .milliseconds(200)]
    let subscriber = EventSubscriber(
        service: service, connection: connection, patterns: ["\(service).#"],
        configuration: .init(retryDelays: delays), processed: processed, handler: handler)
    let group = ServiceGroup(services: [subscriber], gracefulShutdownSignals: [], logger: Logger(label: "test"))
    let running = Task { try await group.run() }
    let channel = try await connection.openChannel()
    for _ in 0..<200 {
        if let info = try? await channel.inspectQueue("\(service).events"), info.consumerCount > 0 { break }
        try await Task.sleep(for: .milliseconds(10))
    }
    let publisher = try await EventPublisher.start(connection: connection, appID: "tests")
    defer {}
    var failure: (any Error)?
    do { try await body(service, publisher, channel) } catch { failure = error }
    await group.triggerGracefulShutdown()
    _ = try? await running.value
    for queue in ["\(service).events", "\(service).events.dlq", "\(service).events.retry.100ms", "\(service).events.retry.200ms"] {
        _ = try? await channel.deleteQueue(queue)
    }
    await connection.close()
    if let failure { throw failure }
}

final class Seen: Sendable {
    private let storage = Mutex<[Event]>([])
    func append(_ event: Event) { storage.withLock { $0.append(event) } }
    var events: [Event] { storage.withLock { $0 } }
}

@Suite("Events", .timeLimit(.minutes(1)))
struct EventTests {
    @Test("an event reaches the subscriber with its type, ids and body")
    func delivered() async throws {
        let seen = Seen()
        try await withSubscriber(handler: { seen.append($0) }) { service, publisher, _ in
            let cause = Envelope(correlationID: "flow-1", type: "\(service).cmd")
            let sent = try await publisher.publish("\(service).thing.happened", Happened(n: 7), aggregateID: "agg-1", causedBy: cause)
            try await waitUntil { seen.events.count == 1 }
            let event = try #require(seen.events.first)
            #expect(event.type == "\(service).thing.happened")
            #expect(event.envelope.messageID == sent.messageID)
            #expect(event.envelope.correlationID == "flow-1")
            #expect(event.envelope.causationID == cause.messageID)
            #expect(event.envelope.aggregateID == "agg-1")
            #expect(try event.decode(Happened.self).n == 7)
            #expect(event.attempt == 1)
        }
    }

    @Test("a failing handler is retried after delays and succeeds; other events keep flowing meanwhile")
    func retried() async throws {
        let seen = Seen()
        // Event 1's first attempt ends only once event 2 is published, so that event 2 is in
        // the queue before event 1's retries, however slowly a loaded machine publishes.
        let secondPublished = Flag()
        try await withSubscriber(handler: { event in
            seen.append(event)
            let payload = try event.decode(Happened.self)
            if payload.n == 1, event.attempt == 1 {
                for _ in 0..<500 where !secondPublished.isSet { try await Task.sleep(for: .milliseconds(10)) }
            }
            if payload.n == 1, event.attempt < 3 { throw ServiceError.unavailable("downstream is down") }
        }) { service, publisher, _ in
            try await publisher.publish("\(service).thing.happened", Happened(n: 1))
            try await publisher.publish("\(service).thing.happened", Happened(n: 2))
            secondPublished.set()
            try await waitUntil { seen.events.contains { $0.attempt == 3 } }
            let order = seen.events.map { "\((try? $0.decode(Happened.self).n) ?? -1)@\($0.attempt)" }
            #expect(order.filter { $0.hasPrefix("1@") } == ["1@1", "1@2", "1@3"])
            // Event 2 did not wait for event 1's retries (which of 2@1 and 1@2 comes first
            // depends on scheduling; 1@3 comes after a longer delay).
            #expect(try #require(order.firstIndex(of: "2@1")) < #require(order.firstIndex(of: "1@3")))
            let third = try #require(seen.events.last)
            #expect(third.type == "\(service).thing.happened")
        }
    }

    @Test("an event that keeps failing ends in the dead-letter queue with why, after every retry")
    func deadLettered() async throws {
        let seen = Seen()
        try await withSubscriber(handler: { event in
            seen.append(event)
            throw ServiceError.internal("boom \(event.attempt)")
        }) { service, publisher, channel in
            let sent = try await publisher.publish("\(service).thing.failed", Happened(n: 9))
            let parked = try #require(try await pollGet(channel, queue: "\(service).events.dlq"))
            #expect(parked.properties.messageID == sent.messageID)
            #expect(parked.properties.headers?["x-error"] == "boom 3")
            #expect(parked.properties.headers?["x-attempts"] == 3)
            #expect(parked.properties.headers?["x-original-routing-key"] == .string("\(service).thing.failed"))
            #expect(seen.events.map(\.attempt) == [1, 2, 3])
            try parked.ack()
        }
    }

    @Test("an event that can never be handled (invalid) is parked at once")
    func invalidParkedAtOnce() async throws {
        let seen = Seen()
        try await withSubscriber(handler: { event in
            seen.append(event)
            _ = try event.decode(Happened.self)
        }) { service, publisher, channel in
            try await publisher.publish(Data(#"{"n":"not a number"}"#.utf8), envelope: Envelope(type: "\(service).thing.odd"))
            let parked = try #require(try await pollGet(channel, queue: "\(service).events.dlq"))
            #expect(parked.properties.headers?["x-attempts"] == 1)
            #expect(parked.properties.headers?["x-error"]?.stringValue?.contains("'n'") == true)
            #expect(seen.events.count == 1)
            try parked.ack()
        }
    }

    @Test("the same event delivered twice is applied once")
    func appliedOnce() async throws {
        let seen = Seen()
        try await withSubscriber(processed: InMemoryProcessedMessages(), handler: { seen.append($0) }) { service, publisher, _ in
            let body = try JSONEncoder().encode(Happened(n: 3))
            let envelope = Envelope(messageID: "event-\(service)", type: "\(service).thing.happened")
            try await publisher.publish(body, envelope: envelope)
            try await publisher.publish(body, envelope: envelope)
            try await publisher.publish(try JSONEncoder().encode(Happened(n: 4)), envelope: Envelope(type: "\(service).thing.happened"))
            try await waitUntil { seen.events.count == 2 }
            try await Task.sleep(for: .milliseconds(200))
            #expect(seen.events.map { (try? $0.decode(Happened.self).n) ?? -1 } == [3, 4])
        }
    }
}
