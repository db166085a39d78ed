import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Not a timed test: numbers for a person, printed as JSON. Runs only with `WARREN_BENCH=1`
/// (`make bench-events` runs it on the release build).
///
/// Appends are measured through the broker at both ends of a million-event log: 100,000 events
/// into an empty log, then 800,000 rows seeded straight into the SQLite file, then 100,000 more
/// through the broker. Each time the events wait in the store's queue while the process is
/// stopped, so the rate measured is the store's own, not the publisher's. Then 100,000 events
/// are paged through `events.query` 1,000 at a time.
@Suite("Event store benchmark", .enabled(if: ProcessInfo.processInfo.environment["WARREN_BENCH"] == "1"), .timeLimit(.minutes(30)))
struct EventStoreBenchmark {
    static let types = ["user.registered", "order.created", "payment.succeeded", "order.confirmed", "order.cancelled", "payment.failed", "user.updated", "order.shipped"]

    @Test("append rate at 0 and at 1 million events; paging 100,000 events through events.query")
    func benchmark() async throws {
        try await EventStoreFixture.with { store in
            var results: [String: Double] = [:]
            await store.stopProcess()
            results["publish_events_per_second"] = try await publish(100_000, to: store)
            try await store.start()
            results["append_first_100k_events_per_second"] = try await drain(100_000, store)
            results["append_first_100k_seconds_in_database"] = try await store.metric("events_append_batch_duration_seconds_sum")

            await store.stopProcess()
            let seeding = ContinuousClock.now
            try seed(800_000, into: store.databasePath)
            results["seed_800k_seconds"] = (ContinuousClock.now - seeding).seconds
            let lastBatch = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)).formatted(.iso8601)
            _ = try await publish(100_000, to: store)
            try await store.start()
            results["append_last_100k_events_per_second"] = try await drain(100_000, store)
            results["append_last_100k_seconds_in_database"] = try await store.metric("events_append_batch_duration_seconds_sum")

            results["page_100k_all_events_per_second"] = try await page(100_000, [:], store)
            results["page_100k_from_position_450k_events_per_second"] = try await page(100_000, ["after": "450000"], store)
            results["page_100k_type_glob_order_events_per_second"] = try await page(100_000, ["type": "order.*"], store)
            results["page_100k_exact_type_events_per_second"] = try await page(100_000, ["type": "payment.succeeded"], store)
            // Time is checked along the position order: the first page walks past 900,000 older events.
            let firstPage = ContinuousClock.now
            _ = try await store.query(["since": lastBatch, "limit": 1000]).get()
            results["since_last_100k_first_page_seconds"] = (ContinuousClock.now - firstPage).seconds
            results["page_100k_since_last_batch_events_per_second"] = try await page(100_000, ["since": lastBatch], store)
            let json = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
            print("event-store benchmark (\(EventStoreFixture.executable)):\n\(String(decoding: json, as: UTF8.self))")
            #expect(results.count == 12)
        }
    }

    /// Publishes `count` order-like events with confirms, 1,000 in flight; returns events/s.
    private func publish(_ count: Int, to store: EventStoreFixture) async throws -> Double {
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                if index >= 1000 { try await group.next() }
                group.addTask {
                    let type = Self.types[index % Self.types.count]
                    let aggregate = "order-\(index % 50_000)"
                    var envelope = Envelope(correlationID: "flow-\(index / 4)", type: type, aggregateID: aggregate)
                    envelope.causationID = UUID().uuidString.lowercased()
                    try await store.publisher.publish(Self.body(index), envelope: envelope)
                }
            }
            try await group.waitForAll()
        }
        return Double(count) / (ContinuousClock.now - started).seconds
    }

    /// Events/s at which the store empties its queue of `count` events, from its first append.
    private func drain(_ count: Int, _ store: EventStoreFixture) async throws -> Double {
        var first: (ContinuousClock.Instant, Double)?
        while true {
            let appended = try await store.metric("events_appended_total")
            let now = ContinuousClock.now
            if first == nil, appended > 0 { first = (now, appended) }
            if appended >= Double(count), let (start, base) = first {
                return (appended - base) / (now - start).seconds
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Reads `count` events matching `filter` in pages of 1,000; returns events/s.
    private func page(_ count: Int, _ filter: [String: Any], _ store: EventStoreFixture) async throws -> Double {
        var request = filter
        request["limit"] = 1000
        var read = 0
        let started = ContinuousClock.now
        while read < count {
            let page = try await store.query(request).get()
            let events = try #require(page["events"] as? [Any])
            read += events.count
            guard let next = page["next"] as? String else { break }
            request["after"] = next
        }
        #expect(read >= count, "only \(read) events match \(filter)")
        return Double(read) / (ContinuousClock.now - started).seconds
    }

    static func body(_ index: Int) -> Data {
        Data(
            #"{"id":"\#(UUID().uuidString.lowercased())","userId":"\#(UUID().uuidString.lowercased())","items":[{"sku":"SKU-\#(index % 997)","quantity":\#(index % 5 + 1),"unitPriceCents":1999}],"totalCents":\#((index % 5 + 1) * 1999),"status":"pending","createdAt":"2026-11-20T14:13:42Z"}"#
                .utf8)
    }

    /// Appends rows straight into the store's SQLite file (the store stopped), as the store
    /// would have stored them.
    private func seed(_ count: Int, into path: String) throws {
        let types = Self.types.map { "'\($0)'" }.joined(separator: ",")
        let sql = """
            BEGIN;
            CREATE TEMP TABLE seed_types(n INTEGER PRIMARY KEY, type TEXT);
            INSERT INTO seed_types(type) SELECT value FROM json_each('[\(types.replacingOccurrences(of: "'", with: "\""))]');
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(count))
            INSERT INTO events (event_id, type, routing_key, aggregate_id, correlation_id, causation_id, timestamp, headers, body)
            SELECT lower(hex(randomblob(16))), t.type, t.type, 'order-' || (i % 50000), 'flow-seed-' || (i / 4), lower(hex(randomblob(16))),
                   strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), '{"x-aggregate-id":"order-' || (i % 50000) || '","x-correlation-id":"flow-seed-' || (i / 4) || '"}',
                   '{"id":"' || lower(hex(randomblob(16))) || '","userId":"' || lower(hex(randomblob(16))) || '","items":[{"sku":"SKU-' || (i % 997) || '","quantity":2,"unitPriceCents":1999}],"totalCents":3998,"status":"pending","createdAt":"2026-11-20T14:13:42Z"}'
            FROM n JOIN seed_types t ON t.n = 1 + i % \(Self.types.count);
            COMMIT;
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sqlite3", path]
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        input.fileHandleForWriting.write(Data(sql.utf8))
        try input.fileHandleForWriting.close()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "sqlite3 could not seed \(path)")
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
