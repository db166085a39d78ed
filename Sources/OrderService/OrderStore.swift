import Foundation
import GRDB
import Warren
import WarrenSQLite

/// What the handlers need of storage. A protocol so that a PostgreSQL store can serve several
/// hosts without touching the handlers; each change writes its event in the same transaction.
protocol OrderStore: Sendable {
    /// Stores a new order and its `order.created` event, and `command` with the order as its
    /// reply in the command inbox, in one transaction; when the user already placed an order
    /// with the same idempotency key, returns that one instead (nothing new is stored). Throws
    /// `CommandAlreadyApplied` if the command committed already.
    func create(_ order: Order, idempotencyKey: String?, cause: Envelope, command: Command?) async throws -> Order
    func order(userID: String, idempotencyKey: String) async throws -> Order?
    func order(id: String) async throws -> Order?
    func list(userID: String, status: Order.Status?, after position: Int64?, limit: Int) async throws -> Page<Order>
    /// Moves a pending order to `status` (with its event); leaves any other as it is and
    /// returns it. nil when there is no such order. `eventID`: the event that caused the
    /// change, applied at most once. `command`: the request that caused it, recorded with the
    /// changed order as its reply (only when the order changed: other outcomes are not effects).
    func settle(id: String, to status: Order.Status, reason: String?, eventID: String?, cause: Envelope, command: Command?) async throws -> Settlement?
}

/// What `OrderStore.settle` found: the order as it is now, and whether this call moved it (false for
/// an order settled before, or an event applied before), so a redelivery is not counted twice.
struct Settlement: Sendable {
    let order: Order
    let changed: Bool
}

/// The default store: the service's own SQLite file, with the outbox beside the orders.
struct SQLiteOrderStore: OrderStore {
    let database: DatabasePool
    /// For `orders.get`, the service's most frequent request.
    let reader: PointReader

    init(database: DatabasePool) {
        self.database = database
        self.reader = PointReader(database)
    }

    static func migrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("orders") { db in
            try db.create(table: "orders") { table in
                table.autoIncrementedPrimaryKey("position")
                table.column("id", .text).notNull().unique()
                table.column("user_id", .text).notNull()
                table.column("items", .text).notNull()  // JSON
                table.column("total_cents", .integer).notNull()
                table.column("status", .text).notNull()
                table.column("reason", .text)
                table.column("idempotency_key", .text)
                table.column("created_at", .datetime).notNull()
                table.column("updated_at", .datetime).notNull()
                table.uniqueKey(["user_id", "idempotency_key"])
            }
            try db.create(index: "orders_by_user", on: "orders", columns: ["user_id", "position"])
        }
    }

    func create(_ order: Order, idempotencyKey: String?, cause: Envelope, command: Command?) async throws -> Order {
        do {
            return try await database.write { db in
                // First: a command that already committed is refused before anything is written.
                try SQLiteCommandInbox.record(command, reply: order, in: db)
                try db.execute(
                    sql: """
                        INSERT INTO orders (id, user_id, items, total_cents, status, idempotency_key, created_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        order.id, order.userId, String(decoding: try WireJSON.encode(order.items), as: UTF8.self), order.totalCents,
                        order.status.rawValue, idempotencyKey, order.createdAt, order.updatedAt,
                    ])
                try Outbox.enqueue(db, type: "order.created", payload: order, aggregateID: order.id, causedBy: cause)
                return order
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            // The same key raced in from another request: the first one won.
            guard let idempotencyKey, let first = try await self.order(userID: order.userId, idempotencyKey: idempotencyKey) else { throw error }
            return first
        }
    }

    func order(userID: String, idempotencyKey: String) async throws -> Order? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE user_id = ? AND idempotency_key = ?", arguments: [userID, idempotencyKey])
                .map(Order.init(row:))
        }
    }

    func order(id: String) async throws -> Order? {
        try await reader.fetchOne("SELECT * FROM orders WHERE id = ?", arguments: [id]).map(Order.init(row:))
    }

    func list(userID: String, status: Order.Status?, after position: Int64?, limit: Int) async throws -> Page<Order> {
        try await database.read { db in
            var sql = "SELECT * FROM orders WHERE user_id = ? AND position > ?"
            var arguments: StatementArguments = [userID, position ?? 0]
            if let status {
                sql += " AND status = ?"
                arguments += [status.rawValue]
            }
            arguments += [limit + 1]
            let rows = try Row.fetchAll(db, sql: sql + " ORDER BY position LIMIT ?", arguments: arguments)
            return Page("orders", rows: rows, limit: limit, item: Order.init(row:))
        }
    }

    func settle(id: String, to status: Order.Status, reason: String?, eventID: String?, cause: Envelope, command: Command?) async throws -> Settlement? {
        try await database.write { db -> Settlement? in
            if let eventID, try !SQLiteProcessedMessages.record(eventID, in: db) {
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE id = ?", arguments: [id]) else { return nil }
                return Settlement(order: Order(row: row), changed: false)
            }
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM orders WHERE id = ?", arguments: [id]) else { return nil }
            var order = Order(row: row)
            guard order.status == .pending else { return Settlement(order: order, changed: false) }
            order.status = status
            order.reason = reason
            order.updatedAt = Date()
            try db.execute(
                sql: "UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE id = ?",
                arguments: [status.rawValue, reason, order.updatedAt, id])
            try Outbox.enqueue(db, type: "order.\(status.rawValue)", payload: order, aggregateID: id, causedBy: cause)
            try SQLiteCommandInbox.record(command, reply: order, in: db)
            return Settlement(order: order, changed: true)
        }
    }
}

extension Order {
    init(row: Row) {
        let items = (try? WireJSON.decodeTrusted([Item].self, from: Data((row["items"] as String).utf8))) ?? []
        self.init(
            id: row["id"], userId: row["user_id"], items: items, totalCents: row["total_cents"],
            status: Status(rawValue: row["status"]) ?? .pending, reason: row["reason"], createdAt: row["created_at"],
            updatedAt: row["updated_at"])
    }
}
