import Foundation
import GRDB
import Logging
import PostgresNIO
import Testing
import Warren
import WarrenAMQP
import WarrenPostgres
import WarrenSQLite
import WarrenTestSupport

/// The runtime's storage (outbox, command inbox, processed ids) on each backend, each test in a
/// database of its own: a SQLite file, or a PostgreSQL database created and dropped for it.
@Suite("Storage on SQLite and PostgreSQL", .timeLimit(.minutes(2)))
struct StorageBackendTests {
    struct Created: Codable, Sendable { var n: Int }

    @Test("two relays draining one outbox of 1,000 events at once publish each exactly once", arguments: StorageBackend.allCases)
    func twoRelaysPublishOnce(backend: StorageBackend) async throws {
        try await withStorage(backend) { storage in
            let queue = Broker.unique("relay-once")
            try await withChannel(queues: [queue]) { connection, channel in
                let type = "t\(UUID().uuidString.prefix(8).lowercased()).created"
                try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
                try await channel.declareQueue(queue, durable: false, autoDelete: false)
                try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: type)
                let ids = try await storage.enqueue(type, 1_000)
                let publisher = try await EventPublisher.start(connection: connection)
                let relays = (0..<2).map { _ in OutboxRelay(storage: storage.outbox, publisher: publisher, batchSize: 50) }
                let taken = try await withThrowingTaskGroup(of: Int.self) { group in
                    for relay in relays {
                        group.addTask {
                            var total = 0
                            while true {
                                let count = try await relay.relayBatch()
                                if count == 0 { return total }
                                total += count
                            }
                        }
                    }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(taken.reduce(0, +) == ids.count, "each row claimed by one relay: \(taken)")
                let deadline = ContinuousClock.now + .seconds(10)
                while try await channel.inspectQueue(queue).messageCount < ids.count, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                try await Task.sleep(for: .milliseconds(300))
                #expect(try await channel.inspectQueue(queue).messageCount == ids.count)
                #expect(try await storage.unsent() == 0)
            }
        }
    }

    @Test("rows a relay claimed and never confirmed (it died) go out once its lease ends; rows under a live lease do not", arguments: StorageBackend.allCases)
    func deadRelayLosesNothing(backend: StorageBackend) async throws {
        try await withStorage(backend) { storage in
            let queue = Broker.unique("relay-lease")
            try await withChannel(queues: [queue]) { connection, channel in
                let type = "t\(UUID().uuidString.prefix(8).lowercased()).created"
                try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
                try await channel.declareQueue(queue, durable: false, autoDelete: false)
                try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: type)
                // One relay holds 20 rows (a lease of a minute: it is still publishing them);
                // another claimed 20 more and died (its lease of half a second runs out).
                _ = try await storage.enqueue(type, 20)
                #expect(try await storage.outbox.claim(limit: 100, lease: 60).count == 20)
                let ids = try await storage.enqueue(type, 20)
                #expect(try await storage.outbox.claim(limit: 100, lease: 0.5).count == 20)
                try await Task.sleep(for: .milliseconds(600))
                let relay = OutboxRelay(storage: storage.outbox, publisher: try await EventPublisher.start(connection: connection))
                #expect(try await relay.relayBatch() == ids.count, "the dead relay's rows, not the live one's")
                #expect(try await relay.relayBatch() == 0)
                let deadline = ContinuousClock.now + .seconds(5)
                while try await channel.inspectQueue(queue).messageCount < ids.count, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(try await channel.inspectQueue(queue).messageCount == ids.count)
            }
        }
    }

    @Test("one command recorded by 8 transactions at once: one effect commits, the others are told it was applied", arguments: StorageBackend.allCases)
    func commandAppliedOnce(backend: StorageBackend) async throws {
        try await withStorage(backend) { storage in
            let command = Command(messageID: UUID().uuidString, operation: "things.create", body: Data(#"{"n":1}"#.utf8))
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        do {
                            try await storage.applyCommand(command, Created(n: 1))
                            return true
                        } catch is CommandAlreadyApplied {
                            return false
                        }
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1, "\(outcomes)")
            #expect(try await storage.effects() == 1)
            let stored = try #require(try await storage.inbox.storedReply(for: command.messageID))
            #expect(stored.fingerprint == command.fingerprint)
            #expect(try JSONDecoder().decode(Created.self, from: stored.body).n == 1)
        }
    }

    @Test("one event id applied by 8 transactions at once: applied once", arguments: StorageBackend.allCases)
    func eventAppliedOnce(backend: StorageBackend) async throws {
        try await withStorage(backend) { storage in
            let id = UUID().uuidString
            let applied = try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 { group.addTask { try await storage.applyEvent(id) } }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(applied.filter { $0 }.count == 1, "\(applied)")
            #expect(try await storage.effects() == 1)
            #expect(try await storage.processed.contains(id))
            #expect(try await !storage.processed.contains(UUID().uuidString))
        }
    }

    @Test("an unusable DATABASE_URL is a clear error that never shows the password", arguments: [
        "mysql://u:s3cret-pw@localhost/db", "postgres://u:s3cret-pw@localhost", "postgres://localhost/db",
        "postgres://u:s3cret-pw@127.0.0.1:1/db?sslmode=disable", "postgres://warren:s3cret-pw@127.0.0.1:5432/db?sslmode=disable",
        "postgres://u:s3cret-pw@localhost/db?sslmode=sometimes", "postgres://u:s3cret-pw@localhost:70000/db",
    ])
    func badURL(url: String) async throws {
        do {
            _ = try await PostgresServiceDatabase.open(url: url, migrations: [], logger: Logger(label: "test"))
            Issue.record("\(url) opened")
        } catch {
            #expect(!error.description.contains("s3cret-pw"), "\(error)")
            #expect(error.description.count > 20, "\(error)")
        }
    }
}

/// One test's storage on one backend, behind the calls the tests make.
struct TestStorage: Sendable {
    var outbox: any OutboxStorage
    var inbox: any CommandInbox
    var processed: any ProcessedMessages
    /// Writes `count` events of `type` (each with a row of effect, as a service would); their ids.
    var enqueue: @Sendable (_ type: String, _ count: Int) async throws -> [String]
    /// Records the command and one effect in one transaction; throws `CommandAlreadyApplied`.
    var applyCommand: @Sendable (_ command: Command, _ reply: StorageBackendTests.Created) async throws -> Void
    /// Records the event id and, if new, one effect in one transaction; whether it was new.
    var applyEvent: @Sendable (_ id: String) async throws -> Bool
    var effects: @Sendable () async throws -> Int
    var unsent: @Sendable () async throws -> Int
}

func withStorage(_ backend: StorageBackend, _ body: (TestStorage) async throws -> Void) async throws {
    switch backend {
    case .sqlite: try await withSQLiteStorage(body)
    case .postgres: try await withPostgresStorage(body)
    }
}

private func withSQLiteStorage(_ body: (TestStorage) async throws -> Void) async throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("warren-storage-\(UUID().uuidString).sqlite")
    defer {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file.path + suffix) }
    }
    let database = try ServiceDatabase.open(service: "test", environment: ["DATABASE_PATH": file.path]) { migrator in
        migrator.registerMigration("effects") { db in
            try db.create(table: "effects") { table in table.autoIncrementedPrimaryKey("id") }
        }
    }
    let storage = TestStorage(
        outbox: SQLiteOutboxStorage(database: database), inbox: SQLiteCommandInbox(database: database),
        processed: SQLiteProcessedMessages(database: database),
        enqueue: { type, count in
            try await database.write { db in
                try (0..<count).map { n in
                    try db.execute(sql: "INSERT INTO effects DEFAULT VALUES")
                    return try Outbox.enqueue(db, type: type, payload: StorageBackendTests.Created(n: n)).messageID
                }
            }
        },
        applyCommand: { command, reply in
            try await database.write { db in
                try SQLiteCommandInbox.record(command, reply: reply, in: db)
                try db.execute(sql: "INSERT INTO effects DEFAULT VALUES")
            }
        },
        applyEvent: { id in
            try await database.write { db in
                guard try SQLiteProcessedMessages.record(id, in: db) else { return false }
                try db.execute(sql: "INSERT INTO effects DEFAULT VALUES")
                return true
            }
        },
        effects: { try await database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM effects") ?? -1 } },
        unsent: { try await database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM warren_outbox WHERE sent_at IS NULL") ?? -1 } })
    try await body(storage)
}

private func withPostgresStorage(_ body: (TestStorage) async throws -> Void) async throws {
    let server = try TestPostgresDatabase.create("storage")
    defer { server.drop() }
    let logger = Logger(label: "test")
    let database = try await PostgresServiceDatabase.open(
        url: server.url, migrations: [.init("effects", ["CREATE TABLE effects (id bigserial PRIMARY KEY)"])], logger: logger)
    let storage = TestStorage(
        outbox: PostgresOutboxStorage(database: database), inbox: PostgresCommandInbox(database: database),
        processed: PostgresProcessedMessages(database: database),
        enqueue: { type, count in
            try await database.transaction { connection in
                var ids: [String] = []
                for n in 0..<count {
                    try await connection.query("INSERT INTO effects DEFAULT VALUES", logger: logger)
                    ids.append(try await PostgresOutbox.enqueue(connection, type: type, payload: StorageBackendTests.Created(n: n), logger: logger).messageID)
                }
                return ids
            }
        },
        applyCommand: { command, reply in
            try await database.transaction { connection in
                // The effect first and a pause before the inbox row: the transactions overlap for real.
                try await connection.query("INSERT INTO effects DEFAULT VALUES", logger: logger)
                try await connection.query("SELECT pg_sleep(0.05)", logger: logger)
                try await PostgresCommandInbox.record(command, reply: reply, on: connection, logger: logger)
            }
        },
        applyEvent: { id in
            try await database.transaction { connection in
                guard try await PostgresProcessedMessages.record(id, on: connection, logger: logger) else { return false }
                try await connection.query("INSERT INTO effects DEFAULT VALUES", logger: logger)
                try await connection.query("SELECT pg_sleep(0.05)", logger: logger)
                return true
            }
        },
        effects: { try await rowCount(database, "SELECT COUNT(*) FROM effects") },
        unsent: { try await rowCount(database, "SELECT COUNT(*) FROM warren_outbox WHERE sent_at IS NULL") })
    try await withThrowingDiscardingTaskGroup { group in
        group.addTask { await database.run() }
        defer { group.cancelAll() }
        try await body(storage)
    }
}

private func rowCount(_ database: PostgresServiceDatabase, _ query: PostgresQuery) async throws -> Int {
    guard let row = try await database.first(query) else { return -1 }
    return try row.decode(Int.self)
}
