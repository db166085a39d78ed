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

struct FakePage: Codable, Sendable {
    var events: [FakeEvent]
    var next: String?
}

/// Serves `events.query` from memory through a plain consumer on `events.rpc`, with every
/// event encoded once up front, so that measuring the replay measures the CLI, not this fake.
final class FakeEventStore: Sendable {
    static let types = ["order.created", "order.confirmed", "payment.succeeded", "user.registered"]

    let events: [FakeEvent]
    let dates: [Date]
    private let channel: AMQPChannel
    private let serving: Task<Void, any Error>

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
                correlationId: "flow-\(index % 7)", causationId: nil,
                // Both forms the event store may write: with and without fractional seconds.
                timestamp: date.formatted(index % 2 == 0 ? .iso8601 : Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
                headers: ["x-correlation-id": "flow-\(index % 7)", "x-aggregate-id": "aggregate-\(index % 10)"],
                body: .init(n: index, note: "event \(index)")))
        }
        let encoder = JSONEncoder()
        let encoded = try events.map { try encoder.encode($0) }
        self.events = events
        self.dates = dates
        channel = try await connection.openChannel()
        try await channel.declareQueue("events.rpc")
        let requests = try await channel.consume(queue: "events.rpc", noAck: true)
        serving = Task { [channel, events, dates] in
            for try await request in requests {
                guard let replyTo = request.properties.replyTo else { continue }
                let (status, body) = Self.answer(request.body, events: events, dates: dates, encoded: encoded)
                try channel.send(body, routingKey: replyTo, properties: AMQPProperties(
                    contentType: "application/json", headers: [WireHeader.status: .string(status)],
                    correlationID: request.properties.correlationID))
            }
        }
    }

    func stop() async {
        serving.cancel()
        _ = await serving.result
        await channel.close()
    }

    private static func answer(_ request: Data, events: [FakeEvent], dates: [Date], encoded: [Data]) -> (String, Data) {
        func invalid(_ message: String) -> (String, Data) {
            ("error", Data(#"{"error":{"code":"invalid","message":"\#(message)"}}"#.utf8))
        }
        guard let query = try? JSONDecoder().decode(EventsQuery.self, from: request) else { return invalid("not a query") }
        let limit = query.limit ?? 100
        guard (1...1000).contains(limit) else { return invalid("limit must be 1…1000") }
        func date(_ text: String?) -> Date?? {
            guard let text else { return .some(nil) }
            return (try? Date(text, strategy: .iso8601)) ?? (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
        }
        guard let since = date(query.since), let until = date(query.until) else { return invalid("since/until must be ISO 8601") }
        var page = Data(#"{"events":["#.utf8)
        var taken = 0
        var index = Int(query.after ?? "0") ?? 0
        while index < events.count, taken < limit {
            let event = events[index]
            let time = dates[index]
            if glob(query.type, event.type), since.map({ time >= $0 }) ?? true, until.map({ time < $0 }) ?? true,
                query.aggregateId.map({ $0 == event.aggregateId }) ?? true, query.correlationId.map({ $0 == event.correlationId }) ?? true
            {
                if taken > 0 { page.append(UInt8(ascii: ",")) }
                page.append(encoded[index])
                taken += 1
            }
            index += 1
        }
        page.append(Data((index < events.count ? #"],"next":"\#(index)"}"# : #"],"next":null}"#).utf8))
        return ("ok", page)
    }

    static func glob(_ pattern: String?, _ type: String) -> Bool {
        guard let pattern else { return true }
        if pattern.hasSuffix("*") { return type.hasPrefix(pattern.dropLast()) }
        return pattern == type
    }
}
