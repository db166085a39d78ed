import Foundation
import GRDB
import Logging
import ServiceLifecycle
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP
import WarrenSQLite

@Suite("Outbox", .timeLimit(.minutes(1)))
struct OutboxTests {
    struct OrderCreated: Codable, Sendable {
        var orderID: String
    }

    /// A service database with an orders table, the outbox and processed ids, in a temp file.
    private func makeDatabase() throws -> (DatabaseQueue, URL) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("warren-outbox-\(UUID().uuidString).sqlite")
        let database = try DatabaseQueue(path: file.path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("orders") { db in
            try db.create(table: "orders") { table in
                table.primaryKey("id", .text)
                table.column("status", .text).notNull()
            }
        }
        Outbox.registerMigration(&migrator)
        SQLiteProcessedMessages.registerMigration(&migrator)
        try migrator.migrate(database)
        return (database, file)
    }

    /// A fresh service database, a connection, and a queue bound to a unique event type (to see
    /// what the relay published); all removed afterwards.
    private func withFixture(
        _ body: (DatabaseQueue, AMQPConnection, AMQPChannel, _ type: String, _ queue: String) async throws -> Void
    ) async throws {
        let (database, file) = try makeDatabase()
        defer { try? FileManager.default.removeItem(at: file) }
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        let type = "t\(UUID().uuidString.prefix(8).lowercased()).order.created"
        let queue = try await watch(type, on: channel)
        var failure: (any Error)?
        do { try await body(database, connection, channel, type, queue) } catch { failure = error }
        _ = try? await channel.deleteQueue(queue)
        await connection.close()
        if let failure { throw failure }
    }

    /// A queue bound to this test's event type, to see what the relay published.
    private func watch(_ type: String, on channel: AMQPChannel) async throws -> String {
        let queue = Broker.unique("outbox-watch")
        try await channel.declareQueue(queue, durable: false, autoDelete: false)
        try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: type)
        return queue
    }

    @Test("an event committed with the state change but not yet published goes out after a restart")
    func publishedAfterCrash() async throws {
        try await withFixture { database, connection, channel, type, queue in
            // The service writes the order and its event in one transaction, then "crashes".
            let envelope = try await database.write { db in
                try db.execute(sql: "INSERT INTO orders (id, status) VALUES ('o-1', 'pending')")
                return try Outbox.enqueue(db, type: type, payload: OrderCreated(orderID: "o-1"), aggregateID: "o-1")
            }
            #expect(try await channel.inspectQueue(queue).messageCount == 0)

            // After the restart, the relay finds the row and publishes it with confirms.
            let publisher = try await EventPublisher.start(connection: connection)
            let relay = OutboxRelay(database: database, publisher: publisher)
            #expect(try await relay.relayBatch() == 1)
            let event = try #require(try await pollGet(channel, queue: queue))
            #expect(event.properties.messageID == envelope.messageID)
            #expect(event.properties.headers?["x-aggregate-id"] == "o-1")
            #expect(try JSONDecoder().decode(OrderCreated.self, from: event.body).orderID == "o-1")
            #expect(try await relay.relayBatch() == 0)  // marked sent
            let unsent = try await database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM warren_outbox WHERE sent_at IS NULL") }
            #expect(unsent == 0)
        }
    }

    @Test("a row AMQP cannot carry is set aside with the reason; the rows around it are published once and marked sent")
    func unpublishableRowSetAside() async throws {
        try await withFixture { database, connection, channel, type, queue in
            // A correlation id over 255 bytes cannot be an AMQP correlation_id (the envelope
            // refuses it at the door; this row stands for any that got in anyway).
            let tooLong = Envelope(correlationID: String(repeating: "c", count: 256))
            try await database.write { db in
                _ = try Outbox.enqueue(db, type: type, payload: OrderCreated(orderID: "before"))
                _ = try Outbox.enqueue(db, type: type, payload: OrderCreated(orderID: "bad"), causedBy: tooLong)
                _ = try Outbox.enqueue(db, type: type, payload: OrderCreated(orderID: "after"))
            }
            let relay = OutboxRelay(database: database, publisher: try await EventPublisher.start(connection: connection))
            #expect(try await relay.relayBatch() == 3)
            #expect(try await relay.relayBatch() == 0)  // nothing is published again
            var published: [String] = []
            while let event = try await pollGet(channel, queue: queue, within: .milliseconds(500)) {
                published.append(try JSONDecoder().decode(OrderCreated.self, from: event.body).orderID)
            }
            #expect(published.sorted() == ["after", "before"])
            let setAside = try await database.read { db in
                try Row.fetchAll(db, sql: "SELECT failure FROM warren_outbox WHERE failed_at IS NOT NULL").map { $0["failure"] as String? }
            }
            #expect(setAside.count == 1)
            #expect(setAside.first??.contains("correlation_id") == true, "\(setAside)")
        }
    }

    @Test("a crash between publishing and marking sent publishes again; the consumer applies it once")
    func republishedThenDeduplicated() async throws {
        try await withFixture { database, connection, channel, type, queue in
            try await database.write { db in
                _ = try Outbox.enqueue(db, type: type, payload: OrderCreated(orderID: "o-2"))
            }
            let relay = OutboxRelay(database: database, publisher: try await EventPublisher.start(connection: connection))
            try await relay.relayBatch()
            // As if the process died after the confirm and before the UPDATE committed, and its
            // lease on the row has run out:
            try await database.write { db in try db.execute(sql: "UPDATE warren_outbox SET sent_at = NULL, claimed_until = NULL") }
            try await relay.relayBatch()

            let first = try #require(try await pollGet(channel, queue: queue))
            let second = try #require(try await pollGet(channel, queue: queue))
            #expect(first.properties.messageID == second.properties.messageID)
            // A consumer recording ids in the same transaction as its effect applies it once.
            let consumerDB = try makeDatabase()
            defer { try? FileManager.default.removeItem(at: consumerDB.1) }
            var applied = 0
            for delivery in [first, second] {
                let id = try #require(delivery.properties.messageID)
                let isNew = try await consumerDB.0.write { db in try SQLiteProcessedMessages.record(id, in: db) }
                if isNew { applied += 1 }
            }
            #expect(applied == 1)
        }
    }

    @Test("a running relay publishes a committed event as soon as it is woken, and stops on shutdown")
    func runningRelay() async throws {
        try await withFixture { database, connection, channel, type, queue in
            let relay = OutboxRelay(database: database, publisher: try await EventPublisher.start(connection: connection), interval: .seconds(30))
            let group = ServiceGroup(services: [relay], gracefulShutdownSignals: [], logger: Logger(label: "test"))
            let running = Task { try await group.run() }
            try await database.write { db in
                _ = try Outbox.enqueue(db, type: type, payload: OrderCreated(orderID: "o-3"))
            }
            let started = ContinuousClock.now
            relay.wake()
            let event = try #require(try await pollGet(channel, queue: queue))
            #expect(started.duration(to: .now) < .seconds(15))  // woken, not the 30 s poll
            #expect(try JSONDecoder().decode(OrderCreated.self, from: event.body).orderID == "o-3")
            await group.triggerGracefulShutdown()
            try await running.value
        }
    }
}
