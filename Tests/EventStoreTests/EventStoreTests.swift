import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// The `event-store` process against the real broker, each test in its own vhost.
@Suite("Event store", .timeLimit(.minutes(3)))
struct EventStoreTests {
    @Test("each event is stored once, also when published twice with the same id or replayed")
    func storedOnce() async throws {
        try await EventStoreFixture.with { store in
            let id = UUID().uuidString.lowercased()
            try await store.publisher.publish("user.registered", ["name": "Ada"], eventID: id)
            try await store.publisher.publish("user.registered", ["name": "Ada"], eventID: id)
            // A replay: the same id again, marked as such.
            try await store.publisher.publish(
                Data(#"{"name":"Ada"}"#.utf8), envelope: Envelope(messageID: id, type: "user.registered"),
                extraHeaders: [WireHeader.replayed: true])
            let other = try await store.publisher.publish("user.updated", ["name": "Ada L."])
            // The last event published is stored only after the three before it were handled.
            let events = try await store.waitFor(2)
            #expect(events.map { $0["id"] as? String } == [id, other.messageID])
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await store.all().count == 2)
            let first = try #require(events.first)
            #expect(first["type"] as? String == "user.registered")
            #expect(first["routingKey"] as? String == "user.registered")
            #expect((first["body"] as? [String: Any])?["name"] as? String == "Ada")
            #expect((first["headers"] as? [String: Any])?["x-correlation-id"] as? String == id)
        }
    }

    @Test("each filter returns exactly the matching events, in position order")
    func filters() async throws {
        try await EventStoreFixture.with { store in
            let day: TimeInterval = 86_400
            let base = Date(timeIntervalSince1970: 1_795_132_800)  // 2026-11-20T00:00:00Z
            let flowA = "flow-a-\(UUID().uuidString.prefix(6))"
            let flowB = "flow-b-\(UUID().uuidString.prefix(6))"
            let samples: [(type: String, aggregate: String?, flow: String, time: Date)] = [
                ("user.registered", "u1", flowA, base),
                ("order.created", "o1", flowA, base + 1 * day),
                ("payment.succeeded", "o1", flowA, base + 2 * day),
                ("order.confirmed", "o1", flowA, base + 3 * day),
                ("order.created", "o2", flowB, base + 4 * day),
                ("order.item.added", "o2", flowB, base + 5 * day),
                ("orders.archived", nil, flowB, base + 6 * day),
                ("payment.failed", "o2", flowB, base + 7 * day),
            ]
            var ids: [String] = []
            for sample in samples {
                let envelope = Envelope(correlationID: sample.flow, type: sample.type, aggregateID: sample.aggregate, timestamp: sample.time)
                try await store.publisher.publish(Data(#"{"n":\#(ids.count)}"#.utf8), envelope: envelope)
                ids.append(envelope.messageID)
            }
            let all = try await store.waitFor(samples.count)
            // Replies and requests as schemas/event-store describes them; the check can fail.
            let reply = "event-store/events.query.reply.schema.json"
            #expect(try Schemas.problems([try await store.query(["limit": 1000]).get()], against: reply) == nil)
            #expect(try Schemas.problems([["events": [], "next": NSNull(), "extra": 1]], against: reply) != nil)
            let request = "event-store/events.query.request.schema.json"
            #expect(try Schemas.problems([["type": "order.*", "since": "2026-11-20", "after": "12", "limit": 10]], against: request) == nil)
            #expect(try Schemas.problems([["limit": 1001]], against: request) != nil)
            #expect(all.map { $0["id"] as? String } == ids)
            let positions = all.compactMap { $0["position"] as? Int }
            #expect(positions == positions.sorted() && Set(positions).count == positions.count)

            func matching(_ filter: [String: Any]) async throws -> [String] {
                try await store.all(filter, pageSize: 2).compactMap { $0["id"] as? String }
            }
            func expected(_ indexes: [Int]) -> [String] { indexes.map { ids[$0] } }
            #expect(try await matching(["type": "order.*"]) == expected([1, 3, 4, 5]))
            #expect(try await matching(["type": "order.created"]) == expected([1, 4]))
            #expect(try await matching(["type": "*.created"]) == expected([1, 4]))
            #expect(try await matching(["type": "order*"]) == expected([1, 3, 4, 5, 6]))
            #expect(try await matching(["type": "payment.*", "aggregateId": "o2"]) == expected([7]))
            #expect(try await matching(["type": "nothing.*"]) == [])
            #expect(try await matching(["aggregateId": "o1"]) == expected([1, 2, 3]))
            #expect(try await matching(["correlationId": flowB]) == expected([4, 5, 6, 7]))
            #expect(try await matching(["correlationId": flowA, "type": "order.*"]) == expected([1, 3]))
            #expect(try await matching(["since": "2026-11-23"]) == expected([3, 4, 5, 6, 7]))
            #expect(try await matching(["until": "2026-11-22T00:00:00Z"]) == expected([0, 1]))
            #expect(try await matching(["since": "2026-11-21T01:00:00+01:00", "until": "2026-11-23T00:00:00.001Z"]) == expected([1, 2, 3]))
            #expect(try await matching(["since": "2026-11-22", "type": "order.*", "correlationId": flowB]) == expected([4, 5]))
            let first = try #require(all.first)
            #expect(first["timestamp"] as? String == "2026-11-20T00:00:00.000Z")
            #expect(first["aggregateId"] as? String == "u1")
            #expect(first["correlationId"] as? String == flowA)
            #expect(all[6]["aggregateId"] == nil)
        }
    }

    @Test("paging with 'after' walks every event once, in order, and ends with next = null")
    func paging() async throws {
        try await EventStoreFixture.with { store in
            var ids: [String] = []
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<250 {
                    let id = UUID().uuidString.lowercased()
                    ids.append(id)
                    group.addTask { try await store.publisher.publish("thing.happened", ["index": index], eventID: id) }
                }
                try await group.waitForAll()
            }
            _ = try await store.waitFor(250)
            for pageSize in [1000, 100, 7] {
                let events = try await store.all(pageSize: pageSize)
                #expect(events.count == 250)
                #expect(Set(events.compactMap { $0["id"] as? String }) == Set(ids))
                let positions = events.compactMap { $0["position"] as? Int }
                #expect(positions == positions.sorted() && Set(positions).count == 250)
            }
            let firstPage = try await store.query(["limit": 100]).get()
            #expect((firstPage["events"] as? [Any])?.count == 100)
            #expect(firstPage["next"] is String)
            let lastPage = try await store.query(["limit": 100, "after": "\(Int64.max)"]).get()
            #expect((lastPage["events"] as? [Any])?.isEmpty == true)
            #expect(lastPage["next"] is NSNull)
            let defaultPage = try await store.query([:]).get()
            #expect((defaultPage["events"] as? [Any])?.count == 100)
        }
    }

    @Test("invalid inputs are refused as invalid, naming the field")
    func invalidInputs() async throws {
        let cases: [(request: [String: Any], field: String)] = [
            (["limit": 0], "limit"), (["limit": 1001], "limit"), (["limit": "10"], "limit"),
            (["since": "yesterday"], "since"), (["until": "2026-13-45T00:00:00Z"], "until"),
            (["after": "abc"], "after"), (["after": "-1"], "after"), (["after": 5], "after"),
            (["type": ""], "type"), (["aggregateId": String(repeating: "a", count: 256)], "aggregateId"),
            (["aggregateID": "typo"], "aggregateID"),
            // Times that do not exist are refused, never rolled over; NUL would cut a filter in SQLite.
            (["since": "2026-02-30"], "since"), (["until": "2026-01-01T24:00:00Z"], "until"),
            (["since": "2016-12-31T23:59:60Z"], "since"), (["since": "2026-11-20T14:13:42"], "since"),
            (["until": "2026-11-20T14:13:42+24:00"], "until"), (["type": "order.created\u{0}junk"], "type"),
            (["aggregateId": "a\u{0}"], "aggregateId"), (["correlationId": "\u{0}"], "correlationId"),
            // Numbers no 64-bit integer holds, or not whole: refused, never trapped on.
            (["limit": 1e300], "limit"), (["limit": -1], "limit"), (["limit": UInt64(9_223_372_036_854_775_808)], "limit"),
            (["limit": 1.5], "limit"), (["limit": Int64.min], "limit"), (["after": "9223372036854775808"], "after"),
        ]
        try await EventStoreFixture.with { store in
            for (request, field) in cases {
                let result = try await store.query(request)
                guard case .failure(let error) = result else {
                    Issue.record("\(request) was accepted")
                    continue
                }
                #expect(error.code == .invalid, "\(request)")
                #expect(error.message.contains("'\(field)'"), "\(request): \(error.message)")
            }
        }
    }

    @Test("a body that is not JSON comes back as base64, byte for byte; JSON comes back as it was")
    func nonJSONBody() async throws {
        try await EventStoreFixture.with { store in
            let binary = Data([0xFF, 0x00, 0x41, 0x7B])
            let text = Data("plain text, not JSON".utf8)
            let json = Data(#"{"name":"Zoë ✓","nested":{"list":[1,2.5,null,true]},"quote":"\"\\"}"#.utf8)
            for body in [binary, text, json] {
                try await store.publisher.publish(body, envelope: Envelope(type: "blob.stored"))
            }
            let events = try await store.waitFor(3)
            try #require(events.count == 3)
            for (event, sent) in zip(events.prefix(2), [binary, text]) {
                #expect(event["bodyEncoding"] as? String == "base64")
                #expect((event["body"] as? String).flatMap { Data(base64Encoded: $0) } == sent)
            }
            #expect(events[2]["bodyEncoding"] == nil)
            let expected = try JSONSerialization.jsonObject(with: json) as? NSDictionary
            let page = try await store.query([:]).get()
            #expect(try Schemas.problems([page], against: "event-store/events.query.reply.schema.json") == nil)
            #expect(events[2]["body"] as? NSDictionary == expected)
        }
    }

    @Test("hostile numbers in an event (timestamp 2^64-1 s, Int64.max, ±1e300-ish doubles, nesting 32 deep) are stored exactly; recording goes on")
    func hostileNumbersStored() async throws {
        try await EventStoreFixture.with { store in
            try await store.channel.enableConfirms()
            // As deep as decoding keeps: 31 arrays around an int, under the header at level 0.
            var nested: AMQPFieldValue = .int(1)
            for _ in 0..<31 { nested = .array([nested]) }
            try await store.channel.publish(
                Data(#"{"n":1}"#.utf8), exchange: EventPublisher.exchange, routingKey: "hostile.event",
                properties: AMQPProperties(
                    contentType: "application/json",
                    headers: [
                        "x-attempts": .int(Int64.max), "x-deadline": .double(1e300), "huge": .double(-Double.greatestFiniteMagnitude),
                        "last": .timestamp(Date(timeIntervalSince1970: 253_402_300_799)), "nested": nested,
                    ],
                    deliveryMode: .persistent, messageID: "hostile-1", timestamp: Date(timeIntervalSince1970: 1.9e19), type: "hostile.event"))
            let after = try await store.publisher.publish("named.event", ["n": 2])
            let events = try await store.waitFor(2)
            #expect(events.map { $0["id"] as? String } == ["hostile-1", after.messageID])
            let hostile = try #require(events.first)
            #expect(hostile["timestamp"] as? String == "9999-12-31T23:59:59.999Z")
            let headers = try #require(hostile["headers"] as? [String: Any])
            #expect(headers["last"] as? String == "9999-12-31T23:59:59.000Z")
            var depth = 0
            var inner: Any? = headers["nested"]
            while let array = inner as? [Any] {
                depth += 1
                inner = array.first
            }
            #expect(depth == 31 && (inner as? NSNumber)?.intValue == 1, "stored whole: \(depth) levels")
            #expect((headers["huge"] as? NSNumber)?.doubleValue == -Double.greatestFiniteMagnitude)
            #expect((headers["x-attempts"] as? NSNumber)?.int64Value == Int64.max)
        }
    }

    @Test("large events make shorter pages, never a failed query: 140 events of 125 KB headers come back page by page")
    func largeEventsArePaged() async throws {
        try await EventStoreFixture.with { store in
            try await store.channel.enableConfirms()
            let type = "big.event"
            var ids: [String] = []
            for index in 0..<140 {
                let id = "big-\(index)-\(UUID().uuidString)"
                ids.append(id)
                try await store.channel.publish(
                    Data(#"{"n":\#(index)}"#.utf8), exchange: EventPublisher.exchange, routingKey: type,
                    properties: AMQPProperties(headers: ["pad": .string(String(repeating: "x", count: 125_000))], messageID: id, type: type))
            }
            let stored = try await store.waitFor(140, ["type": type])
            #expect(stored.compactMap { $0["id"] as? String } == ids)
            let first = try await store.query(["type": type, "limit": 1000]).get()
            let page = try #require(first["events"] as? [[String: Any]])
            #expect(page.count > 0 && page.count < 140, "a page of \(page.count)")
            #expect(first["next"] is String)
        }
    }

    @Test("an event too large to come back in a reply on its own is parked at intake; the log stays readable past it")
    func tooLargeForAReply() async throws {
        try await EventStoreFixture.with { store in
            try await store.channel.enableConfirms()
            // 13 MiB that is not JSON: stored as base64, it would be over 17 MiB in a reply.
            let huge = Data(repeating: 0xff, count: 13 << 20)
            try await store.channel.publish(
                huge, exchange: EventPublisher.exchange, routingKey: "user.updated",
                properties: AMQPProperties(contentType: "application/octet-stream", messageID: "huge-\(UUID().uuidString)", type: "user.updated"))
            let after = try await store.publisher.publish("named.event", ["n": 1])
            #expect(try await store.waitFor(1).map { $0["id"] as? String } == [after.messageID])
            #expect(try await store.parkedCount() == 1)
            let page = try await store.query(["limit": 1]).get()
            #expect((page["events"] as? [[String: Any]])?.count == 1)
        }
    }

    @Test("an unstorable event whose copy cannot be parked (near-frame headers) is dead-lettered by the broker, once; recording goes on")
    func nearFrameUnstorable() async throws {
        try await EventStoreFixture.with { store in
            try await store.channel.enableConfirms()
            let type = "anonymous.event"
            // No message id (unstorable); headers as large as the frame allows, less 5 bytes.
            let fixed = 14 + (1 + type.utf8.count) + 10 + 4 + (1 + 3 + 1 + 4)
            try await store.channel.publish(
                Data(#"{"n":1}"#.utf8), exchange: EventPublisher.exchange, routingKey: type,
                properties: AMQPProperties(headers: ["pad": .string(String(repeating: "p", count: 131_072 - 8 - fixed - 5))], type: type))
            let after = try await store.publisher.publish("named.event", ["n": 2])
            #expect(try await store.waitFor(1).map { $0["id"] as? String } == [after.messageID])
            #expect(try await store.parkedCount() == 1)
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await store.channel.inspectQueue("events.events").messageCount == 0)
            #expect(try await store.channel.inspectQueue("events.events.dlq").messageCount == 1)
        }
    }

    /// Headers the store cannot keep as they came, and the reason its x-error must give.
    static let unkeepable: [(name: String, header: AMQPFieldValue, reason: String, appID: String?)] = {
        var deepTable: AMQPFieldValue = .int(1)
        for _ in 0..<2000 { deepTable = .table(["d": deepTable]) }
        var deepArray: AMQPFieldValue = .int(1)
        for _ in 0..<40 { deepArray = .array([deepArray]) }
        return [
            ("a table nested 2000 deep", deepTable, "nested deeper than 32 levels", nil),
            ("an array nested 40 deep", deepArray, "nested deeper than 32 levels", nil),
            ("a timestamp after year 9999", .timestamp(Date(timeIntervalSince1970: 1.9e19)), "a timestamp after year 9999", nil),
            ("a timestamp after year 9999, nested", .table(["at": .array([.timestamp(Date(timeIntervalSince1970: 253_402_300_800))])]), "\"x-hostile.at[0]\"", nil),
            ("an AMQP decimal", .decimal(scale: 2, value: 110), "an AMQP decimal", nil),
            ("an app_id with NUL (it was stored without a source)", .int(1), "app_id contains NUL", "orders\u{0}evil"),
        ]
    }()

    @Test("an event the store cannot keep as it came is parked with the reason, never stored altered; recording goes on", arguments: unkeepable.indices)
    func unkeepableIsParked(_ index: Int) async throws {
        let example = Self.unkeepable[index]
        try await EventStoreFixture.with { store in
            try await store.channel.enableConfirms()
            try await store.channel.publish(
                Data(#"{"n":1}"#.utf8), exchange: EventPublisher.exchange, routingKey: "weird.edge",
                properties: AMQPProperties(
                    contentType: "application/json", headers: ["x-hostile": example.header], deliveryMode: .persistent,
                    messageID: "unkeepable-\(index)", type: "weird.edge", appID: example.appID))
            let after = try await store.publisher.publish("named.event", ["n": 2])
            let parked = try #require(try await pollGet(store.channel, queue: "events.events.dlq", within: .seconds(30)), "\(example.name)")
            #expect(parked.properties.messageID == "unkeepable-\(index)")
            let error = parked.properties.headers?[WireHeader.error]?.stringValue ?? ""
            #expect(error.contains("cannot keep the event as it came") && error.contains(example.reason), "\(example.name): \(error)")
            // Nothing of it was stored; the events behind it were.
            #expect(try await store.waitFor(1).map { $0["id"] as? String } == [after.messageID])
        }
    }

    @Test("an event without a message id is parked in events.events.dlq with x-error, not lost")
    func unstorableIsParked() async throws {
        try await EventStoreFixture.with { store in
            try await store.channel.enableConfirms()
            try await store.channel.publish(
                Data(#"{"n":1}"#.utf8), exchange: EventPublisher.exchange, routingKey: "anonymous.event",
                properties: AMQPProperties(contentType: "application/json", deliveryMode: .persistent, type: "anonymous.event"))
            let after = try await store.publisher.publish("named.event", ["n": 2])
            let parked = try #require(try await pollGet(store.channel, queue: "events.events.dlq", within: .seconds(30)))
            #expect(parked.body == Data(#"{"n":1}"#.utf8))
            #expect(parked.properties.headers?[WireHeader.error]?.stringValue?.contains("message_id") == true)
            #expect(parked.properties.headers?[WireHeader.originalRoutingKey] == "anonymous.event")
            // The events behind it were not held up.
            #expect(try await store.waitFor(1).map { $0["id"] as? String } == [after.messageID])
        }
    }
}
