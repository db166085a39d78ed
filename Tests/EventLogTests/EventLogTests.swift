import Foundation
import Logging
import Testing
import WarrenPostgres
import WarrenTestSupport

@testable import EventStore

/// The event log on each backend, each test in a database of its own.
@Suite("The event log on SQLite and PostgreSQL", .timeLimit(.minutes(3)))
struct EventLogTests {
    @Test(
        "8 writers on separate connections append 2,400 events while a reader pages with cursors: the reader gets each exactly once, none skipped",
        arguments: StorageBackend.allCases)
    func cursorsMissNothing(backend: StorageBackend) async throws {
        try await withEventLog(backend) { log in
            let writers = 8, batches = 60, perBatch = 5
            let done = Flag()
            let reader = Task {
                var seen: [String] = []
                var cursor: Int64 = 0
                var idle = 0
                // Pages until the writers are done and a page comes back empty twice.
                while idle < 2 {
                    let page = try await log.page(EventQuery(after: cursor, limit: 37))
                    let events = try Self.events(page)
                    seen += events.map(\.id)
                    cursor = events.last?.position ?? cursor
                    if events.isEmpty, done.isSet { idle += 1 }
                    if events.isEmpty { try? await Task.sleep(for: .milliseconds(5)) }
                }
                return seen
            }
            let written = try await withThrowingTaskGroup(of: [String].self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        var ids: [String] = []
                        for batch in 0..<batches {
                            let events = (0..<perBatch).map { n in Self.event(id: "w\(writer)-b\(batch)-\(n)", type: "order.created") }
                            let stored = try await log.append(events)
                            #expect(stored == perBatch)
                            ids += events.map(\.id)
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: [String]()) { $0 += $1 }
            }
            done.set()
            let read = try await reader.value
            #expect(written.count == writers * batches * perBatch)
            #expect(read.count == written.count, "read \(read.count) of \(written.count)")
            let missing = Set(written).subtracting(read)
            #expect(missing.isEmpty, "\(missing.count) never read, e.g. \(missing.sorted().prefix(5))")
            #expect(Set(read).count == read.count, "some event read twice")
        }
    }

    @Test("appending is idempotent by id (also within a batch), and queries filter by type glob, aggregate and correlation alike", arguments: StorageBackend.allCases)
    func queries(backend: StorageBackend) async throws {
        try await withEventLog(backend) { log in
            let events = [
                Self.event(id: "1", type: "order.created", aggregate: "a"), Self.event(id: "2", type: "order.cancelled", aggregate: "a"),
                Self.event(id: "3", type: "payment.succeeded", aggregate: "b", correlation: "flow"), Self.event(id: "4", type: "order_xcreated"),
                Self.event(id: "5", type: "order%created", body: Data([0xff, 0x00])), Self.event(id: "1", type: "order.created"),
            ]
            #expect(try await log.append(events) == 5)
            #expect(try await log.append(Array(events.prefix(2))) == 0)
            func ids(_ query: EventQuery) async throws -> [String] { try Self.events(try await log.page(query)).map(\.id) }
            #expect(try await ids(EventQuery(limit: 100)) == ["1", "2", "3", "4", "5"])
            #expect(try await ids(EventQuery(typePattern: "order.*", limit: 100)) == ["1", "2"])
            #expect(try await ids(EventQuery(typePattern: "order_*", limit: 100)) == ["4"], "_ is no wildcard")
            #expect(try await ids(EventQuery(typePattern: "order%*", limit: 100)) == ["5"], "% is no wildcard")
            #expect(try await ids(EventQuery(typePattern: "*.created", limit: 100)) == ["1"])
            #expect(try await ids(EventQuery(aggregateID: "a", limit: 100)) == ["1", "2"])
            #expect(try await ids(EventQuery(correlationID: "flow", limit: 100)) == ["3"])
            let first = try await log.page(EventQuery(limit: 2))
            #expect(first.count == 2)
            let next = try #require(first.next)
            #expect(try await ids(EventQuery(after: next, limit: 100)) == ["3", "4", "5"])
            // A body that is not JSON comes back as base64, marked so.
            let raw = try #require(try Self.events(try await log.page(EventQuery(typePattern: "order%created", limit: 1))).first?.json)
            #expect(raw["body"] as? String == Data([0xff, 0x00]).base64EncodedString())
            #expect(raw["bodyEncoding"] as? String == "base64")
            let json = try #require(try Self.events(try await log.page(EventQuery(aggregateID: "b", limit: 1))).first?.json)
            #expect((json["body"] as? [String: Any])?["n"] as? Int == 1)
            #expect(json["correlationId"] as? String == "flow")
        }
    }

    static func event(id: String, type: String, aggregate: String? = nil, correlation: String? = nil, body: Data = Data(#"{"n":1}"#.utf8)) -> IncomingEvent {
        IncomingEvent(
            id: id, type: type, routingKey: type, aggregateID: aggregate, correlationID: correlation, causationID: nil,
            timestamp: "2026-11-29T12:00:00.000Z", headersJSON: "{}", body: body)
    }

    struct Read {
        var id: String
        var position: Int64
        var json: [String: Any]
    }

    static func events(_ page: EventLogPage) throws -> [Read] {
        let array = try JSONSerialization.jsonObject(with: Data("[".utf8) + page.eventsJSON + Data("]".utf8)) as? [[String: Any]] ?? []
        return array.map { Read(id: $0["id"] as? String ?? "", position: ($0["position"] as? NSNumber)?.int64Value ?? -1, json: $0) }
    }
}

func withEventLog(_ backend: StorageBackend, _ body: (any EventLog) async throws -> Void) async throws {
    switch backend {
    case .sqlite:
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("warren-events-\(UUID().uuidString).sqlite")
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file.path + suffix) } }
        try await body(try SQLiteEventLog(path: file.path))
    case .postgres:
        let server = try TestPostgresDatabase.create("events")
        defer { server.drop() }
        let database = try await PostgresServiceDatabase.open(url: server.url, migrations: PostgresEventLog.migrations, logger: Logger(label: "test"))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await database.run() }
            defer { group.cancelAll() }
            try await body(PostgresEventLog(database: database))
        }
    }
}
