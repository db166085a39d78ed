public import Foundation
public import GRDB
public import Logging
import Metrics
public import ServiceLifecycle
import Tracing
public import Warren

/// The transactional outbox: an event is written to the service's own SQLite database in the
/// same transaction as the state change that caused it, and `OutboxRelay` publishes it
/// afterwards. A crash between the two loses nothing: the row is still there and published on
/// restart (at least once; consumers deduplicate by message id).
public enum Outbox {
    /// Adds the outbox table to a service's migrations.
    public static func registerMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("warren_outbox") { db in
            try db.create(table: "warren_outbox") { table in
                table.autoIncrementedPrimaryKey("sequence")
                table.column("event_id", .text).notNull().unique()
                table.column("type", .text).notNull()
                table.column("aggregate_id", .text)
                table.column("correlation_id", .text).notNull()
                table.column("causation_id", .text)
                table.column("body", .blob).notNull()
                table.column("created_at", .datetime).notNull()
                table.column("sent_at", .datetime)
            }
            try db.create(index: "warren_outbox_unsent", on: "warren_outbox", columns: ["sent_at", "sequence"])
        }
        migrator.registerMigration("warren_outbox_claims") { db in
            // A relay leases the rows it publishes, so that instances sharing the database do
            // not publish the same event twice; a lease left by a crash expires.
            try db.alter(table: "warren_outbox") { table in table.add(column: "claimed_until", .datetime) }
        }
        migrator.registerMigration("warren_outbox_failures") { db in
            // A row AMQP cannot carry is set aside with the reason, so that it neither holds up
            // the rows after it nor makes the relay publish its batch again and again.
            try db.alter(table: "warren_outbox") { table in
                table.add(column: "failed_at", .datetime)
                table.add(column: "failure", .text)
            }
        }
        migrator.registerMigration("warren_outbox_trace_context") { db in
            // The W3C traceparent of the outbox write's span, so that the relay publishes the
            // event in the trace of the request that caused it. NULL when nothing was traced.
            try db.alter(table: "warren_outbox") { table in table.add(column: "traceparent", .text) }
        }
    }

    /// Records an event inside the caller's transaction; returns its envelope (the event id is
    /// its message id). Call it from the same `write` that changes the state.
    @discardableResult
    public static func enqueue<Payload: Encodable>(
        _ db: Database, type: String, payload: Payload, aggregateID: String? = nil, causedBy cause: Envelope? = nil
    ) throws -> Envelope {
        let envelope = tracedEnvelope(type: type, aggregateID: aggregateID, causedBy: cause)
        try db.execute(
            sql: """
                INSERT INTO warren_outbox (event_id, type, aggregate_id, correlation_id, causation_id, body, created_at, traceparent)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                envelope.messageID, type, aggregateID, envelope.correlationID, envelope.causationID,
                try WireJSON.encode(payload), Date(), envelope.traceparent,
            ])
        return envelope
    }

    /// The envelope of an event about to be written to an outbox (either backend), with the
    /// traceparent of its `create` span. The event is created in the trace of its cause (the
    /// handler's span, whose traceparent the cause's envelope carries: the database runs the
    /// write off the task, so the task-local context is not at hand); the relay's publish span
    /// becomes its child.
    public static func tracedEnvelope(type: String, aggregateID: String?, causedBy cause: Envelope?) -> Envelope {
        var envelope = cause?.caused(type: type) ?? Envelope(type: type)
        envelope.aggregateID = aggregateID
        let span = MessageTracing.startSpan("create \(type)", context: MessageTracing.context(traceparent: envelope.traceparent), ofKind: .producer)
        defer { span?.end() }
        span?.setMessagingAttributes(operation: "create", operationType: "create", destination: EventPublisher.exchange, routingKey: type, envelope: envelope)
        if let span, let traceparent = MessageTracing.traceparent(of: span.context) { envelope.traceparent = traceparent }
        return envelope
    }
}

/// One unsent event as a relay claimed it from an outbox table.
public struct OutboxEvent: Sendable {
    /// The row's position in its outbox: what the relay marks sent, failed or released.
    public var sequence: Int64
    public var envelope: Envelope
    public var body: Data

    public init(sequence: Int64, envelope: Envelope, body: Data) {
        self.sequence = sequence
        self.envelope = envelope
        self.body = body
    }
}

/// An outbox table as the relay sees it, one per backend (`SQLiteOutboxStorage` here,
/// `PostgresOutboxStorage` in WarrenPostgres), so that the publishing rules live once.
/// Claims are leases: relays of several instances sharing the database never hold the same
/// row at once, and the rows of a relay that died come free when its lease runs out.
public protocol OutboxStorage: Sendable {
    /// Up to `limit` of the oldest unsent events nobody else holds, in sequence order, leased
    /// to the caller for `lease` seconds in the transaction that reads them.
    func claim(limit: Int, lease: TimeInterval) async throws -> [OutboxEvent]
    /// The broker confirmed these: they never go out again.
    func markSent(_ sequences: [Int64]) async throws
    /// AMQP can never carry it: set aside with the reason.
    func markFailed(_ sequence: Int64, reason: String) async throws
    /// Publishing failed for a reason worth retrying: let any relay take them at once.
    func release(_ sequences: [Int64]) async throws
    /// Rows neither published nor set aside (`warren_outbox_pending_events`).
    func pendingCount() async throws -> Int
}

/// Publishes the outbox's unsent events in order, with confirms, and marks each sent once the
/// broker confirmed it. Polls every `interval`; `wake()` after a commit publishes at once.
public final class OutboxRelay: Service, Sendable {
    private let storage: any OutboxStorage
    private let publisher: EventPublisher
    private let interval: Duration
    private let batchSize: Int
    private let logger: Logger
    private let wakeups: AsyncStream<Void>
    private let wakeupContinuation: AsyncStream<Void>.Continuation

    public init(
        storage: any OutboxStorage, publisher: EventPublisher, interval: Duration = .milliseconds(200), batchSize: Int = 500,
        logger: Logger = Logger(label: "warren.outbox")
    ) {
        self.storage = storage
        self.publisher = publisher
        self.interval = interval
        self.batchSize = batchSize
        self.logger = logger
        (wakeups, wakeupContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The relay of a service's SQLite outbox.
    public convenience init(
        database: any DatabaseWriter, publisher: EventPublisher, interval: Duration = .milliseconds(200), batchSize: Int = 500,
        logger: Logger = Logger(label: "warren.outbox")
    ) {
        self.init(storage: SQLiteOutboxStorage(database: database), publisher: publisher, interval: interval, batchSize: batchSize, logger: logger)
    }

    /// Asks the relay to look for new events now rather than at its next poll.
    public func wake() { wakeupContinuation.yield() }

    public func run() async throws {
        wake()  // relay what a previous run left behind, at once
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: self.interval)
                    self.wake()
                }
            }
            for await _ in wakeups.cancelOnGracefulShutdown() {
                do {
                    while try await relayBatch() == batchSize {}
                } catch is CancellationError {
                    // Shutting down: the rows stay unsent and go out at the next start.
                } catch {
                    logger.warning("outbox relay failed; retrying", metadata: ["error": "\(error)"])
                }
                // After a failed batch too: a backlog that grows while the broker is unreachable
                // is what the gauge is for.
                if let pending = try? await storage.pendingCount() { Self.pendingGauge.record(pending) }
            }
            group.cancelAll()
        }
    }

    /// Publishes one batch of unsent events; returns how many it took from the outbox. Each
    /// confirmed event is marked sent, whatever becomes of the others. One that can never be
    /// published (AMQP cannot carry it) is set aside (`failed_at`, `failure`, an error in the
    /// log) rather than retried for ever; one that failed for a reason worth retrying (the
    /// broker, the connection) is left for the next attempt, and the call throws.
    @discardableResult
    public func relayBatch() async throws -> Int {
        let pending = try await storage.claim(limit: batchSize, lease: Self.claimDuration)
        guard !pending.isEmpty else { return 0 }
        // Published concurrently (pipelined confirms) in the channel's order.
        let failures = await withTaskGroup(of: (Int64, (any Error)?).self) { group in
            for event in pending {
                group.addTask {
                    do {
                        try await self.publisher.publish(event.body, envelope: event.envelope)
                        return (event.sequence, nil)
                    } catch {
                        return (event.sequence, error)
                    }
                }
            }
            var failures: [Int64: any Error] = [:]
            for await (sequence, error) in group { if let error { failures[sequence] = error } }
            return failures
        }
        let sent = pending.map(\.sequence).filter { failures[$0] == nil }
        if !sent.isEmpty { try await storage.markSent(sent) }
        var retry: [Int64] = []
        for event in pending {
            guard let error = failures[event.sequence] else { continue }
            guard let reason = EventPublisher.permanentFailure(error) else {
                retry.append(event.sequence)
                continue
            }
            try await storage.markFailed(event.sequence, reason: reason)
            logger.error(
                "an outbox event can never be published: set aside in the outbox",
                metadata: ["event_id": "\(event.envelope.messageID)", "type": "\(event.envelope.type ?? "-")", "error": "\(reason)"])
        }
        if let first = retry.first, let error = failures[first] {
            try? await storage.release(retry)  // let the next attempt have them at once
            throw error
        }
        logger.debug("relayed events", metadata: ["count": "\(sent.count)"])
        return pending.count
    }

    /// Longer than a batch's publish with confirms takes (well under a second); the events a
    /// crashed relay had claimed go out this much later.
    static let claimDuration: TimeInterval = 10

    /// A backlog that grows means the relay cannot keep up or cannot reach the broker.
    private static let pendingGauge = Gauge(label: "warren_outbox_pending_events")
}

/// The outbox table in a service's SQLite database.
public struct SQLiteOutboxStorage: OutboxStorage {
    private let database: any DatabaseWriter

    public init(database: any DatabaseWriter) { self.database = database }

    /// The oldest unsent events nobody else is publishing, leased in the same transaction that
    /// reads them (SQLite's single writer makes the read and the lease one step).
    public func claim(limit: Int, lease: TimeInterval) async throws -> [OutboxEvent] {
        try await database.write { @Sendable db in
            let now = Date()
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT sequence, event_id, type, aggregate_id, correlation_id, causation_id, body, created_at, traceparent
                    FROM warren_outbox WHERE sent_at IS NULL AND failed_at IS NULL AND (claimed_until IS NULL OR claimed_until < ?)
                    ORDER BY sequence LIMIT ?
                    """,
                arguments: [now, limit])
            let pending = rows.map { row in
                OutboxEvent(
                    sequence: row["sequence"],
                    envelope: Envelope(
                        messageID: row["event_id"], correlationID: row["correlation_id"], causationID: row["causation_id"],
                        type: row["type"], traceparent: row["traceparent"], aggregateID: row["aggregate_id"], timestamp: row["created_at"]),
                    body: row["body"])
            }
            if !pending.isEmpty {
                try Self.update(db, pending.map(\.sequence), set: "claimed_until = ?", now + lease)
            }
            return pending
        }
    }

    public func markSent(_ sequences: [Int64]) async throws {
        try await database.write { @Sendable db in try Self.update(db, sequences, set: "sent_at = ?", Date()) }
    }

    public func markFailed(_ sequence: Int64, reason: String) async throws {
        try await database.write { @Sendable db in
            try db.execute(sql: "UPDATE warren_outbox SET failed_at = ?, failure = ? WHERE sequence = ?", arguments: [Date(), reason, sequence])
        }
    }

    public func release(_ sequences: [Int64]) async throws {
        try await database.write { @Sendable db in try Self.update(db, sequences, set: "claimed_until = NULL", nil) }
    }

    public func pendingCount() async throws -> Int {
        try await database.read { @Sendable db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM warren_outbox WHERE sent_at IS NULL AND failed_at IS NULL") ?? 0
        }
    }

    private static func update(_ db: Database, _ sequences: [Int64], set assignment: String, _ value: (any DatabaseValueConvertible)?) throws {
        let placeholders = sequences.map { _ in "?" }.joined(separator: ",")
        try db.execute(
            sql: "UPDATE warren_outbox SET \(assignment) WHERE sequence IN (\(placeholders))",
            arguments: StatementArguments((value.map { [$0] } ?? []) + sequences))
    }
}

/// Processed message ids in the service's SQLite database. `record(_:in:)` inside the same
/// transaction as the effect makes "apply at most once" exact; the `ProcessedMessages`
/// methods serve the subscriber's check-then-record for effects outside the database.
public final class SQLiteProcessedMessages: ProcessedMessages {
    private let database: any DatabaseWriter

    public init(database: any DatabaseWriter) { self.database = database }

    public static func registerMigration(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("warren_processed_messages") { db in
            try db.create(table: "warren_processed_messages") { table in
                table.primaryKey("message_id", .text)
                table.column("processed_at", .datetime).notNull()
            }
        }
    }

    /// Records `messageID` in the caller's transaction; false if it was already applied (then
    /// the caller skips the effect and lets the transaction commit or roll back as it likes).
    public static func record(_ messageID: String, in db: Database) throws -> Bool {
        try db.execute(sql: "INSERT OR IGNORE INTO warren_processed_messages (message_id, processed_at) VALUES (?, ?)", arguments: [messageID, Date()])
        return db.changesCount > 0
    }

    public func contains(_ messageID: String) async throws -> Bool {
        try await database.read { @Sendable db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM warren_processed_messages WHERE message_id = ?", arguments: [messageID]) ?? false
        }
    }

    public func insert(_ messageID: String) async throws {
        _ = try await database.write { @Sendable db in try Self.record(messageID, in: db) }
    }
}
