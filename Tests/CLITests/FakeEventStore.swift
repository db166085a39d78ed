// A stand-in for the event store's database, answering `events.query` over the real broker as
// the event-store service does (common brief, "event store"). AMQP itself is not faked.
import Foundation
import Warren
import WarrenAMQP

struct FakeEvent: Codable, Sendable {
    struct Body: Codable, Sendable, Equatable {
        var n: Int
        var note: String
    }

    var position: Int64
    var id: String
    var type: String
    var routingKey: String
    var aggregateId: String?
    var correlationId: String?
    var causationId: String?
    var timestamp: String
    var headers: [String: String]
    var body: Body
}

struct FakeQuery: Codable, Sendable {
    var type: String?
    var since: String?
    var until: String?
    var aggregateId: String?
    var correlationId: String?
    var after: String?
    var limit: Int?
}

struct FakePage: Codable, Sendable {
    var events: [FakeEvent]
    var next: String?
}

final class FakeEventStore: Sendable {
    static let types = ["order.created", "order.confirmed", "payment.succeeded", "user.registered"]

    let events: [FakeEvent]
    let dates: [Date]
    private let service: InProcessService

    /// `count` events, a minute apart, the last 30 s before now; types, aggregates and
    /// correlation ids cycle so every filter selects a known part.
    init(count: Int, connection: AMQPConnection) async throws {
        let now = Date()
        var events: [FakeEvent] = []
        var dates: [Date] = []
        events.reserveCapacity(count)
        for index in 0..<count {
            let date = now - Double(count - index) * 60 + 30
            dates.append(date)
            events.append(FakeEvent(
                position: Int64(index + 1), id: UUID().uuidString.lowercased(), type: Self.types[index % Self.types.count],
                routingKey: Self.types[index % Self.types.count], aggregateId: "aggregate-\(index % 10)",
                correlationId: "flow-\(index % 7)", causationId: nil, timestamp: date.formatted(.iso8601),
                headers: ["x-correlation-id": "flow-\(index % 7)", "x-aggregate-id": "aggregate-\(index % 10)"],
                body: .init(n: index, note: "event \(index)")))
        }
        self.events = events
        self.dates = dates
        let (stored, times) = (events, dates)
        var handlers = RPCHandlers()
        handlers.on("events.query", FakeQuery.self) { query, _ in
            return try Self.answer(query, events: stored, dates: times)
        }
        service = try await InProcessService("events", handlers: handlers, connection: connection)
    }

    func stop() async { await service.stop() }

    private static func answer(_ query: FakeQuery, events: [FakeEvent], dates: [Date]) throws -> FakePage {
        let limit = query.limit ?? 100
        guard (1...1000).contains(limit) else { throw ServiceError.invalid("limit must be 1…1000") }
        func date(_ text: String?) throws -> Date? {
            guard let text else { return nil }
            guard let date = (try? Date(text, strategy: .iso8601)) ?? (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) else {
                throw ServiceError.invalid("since/until must be ISO 8601")
            }
            return date
        }
        let since = try date(query.since)
        let until = try date(query.until)
        let start = Int(query.after ?? "0") ?? 0
        var page: [FakeEvent] = []
        var index = start
        while index < events.count, page.count < limit {
            let event = events[index]
            let time = dates[index]
            if Self.glob(query.type, event.type), since.map({ time >= $0 }) ?? true, until.map({ time < $0 }) ?? true,
                query.aggregateId.map({ $0 == event.aggregateId }) ?? true, query.correlationId.map({ $0 == event.correlationId }) ?? true
            {
                page.append(event)
            }
            index += 1
        }
        return FakePage(events: page, next: index < events.count ? String(index) : nil)
    }

    static func glob(_ pattern: String?, _ type: String) -> Bool {
        guard let pattern else { return true }
        if pattern.hasSuffix("*") { return type.hasPrefix(pattern.dropLast()) }
        return pattern == type
    }
}
