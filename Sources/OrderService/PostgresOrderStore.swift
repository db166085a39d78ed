import Foundation
import Logging
import PostgresNIO
import Warren
import WarrenPostgres
import WarrenSQLite

/// The orders in a PostgreSQL database (`DATABASE_URL`) that several instances share. The
/// unique (user_id, idempotency_key) is the arbiter of an idempotency key across instances; a
/// payment event is applied once through the processed ids, in the order's transaction, with
/// the order row locked (`FOR UPDATE`) so that two instances settling it take turns.
struct PostgresOrderStore: OrderStore {
    let database: PostgresServiceDatabase

    static let migrations: [PostgresServiceDatabase.Migration] = [
        .init("orders", [
            """
            CREATE TABLE orders (
                position bigserial PRIMARY KEY,
                id text NOT NULL UNIQUE,
                user_id text NOT NULL,
                items text NOT NULL,
                total_cents bigint NOT NULL,
                status text NOT NULL,
                reason text,
                idempotency_key text,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                CONSTRAINT orders_idempotency_key_unique UNIQUE (user_id, idempotency_key)
            )
            """,
            "CREATE INDEX orders_by_user ON orders (user_id, position)",
        ])
    ]

    private static let columns = "id, user_id, items, total_cents, status, reason, created_at, updated_at, position"
    private var logger: Logger { database.logger }

    func create(_ order: Order, idempotencyKey: String?, cause: Envelope, command: Command?) async throws -> Order {
        do {
            return try await database.transaction { connection in
                // First: a command that already committed is refused before anything is written.
                try await PostgresCommandInbox.record(command, reply: order, on: connection, logger: logger)
                let items = String(decoding: try WireJSON.encode(order.items), as: UTF8.self)
                try await connection.query(
                    """
                    INSERT INTO orders (id, user_id, items, total_cents, status, idempotency_key, created_at, updated_at)
                    VALUES (\(order.id), \(order.userId), \(items), \(order.totalCents), \(order.status.rawValue), \(idempotencyKey),
                            \(order.createdAt), \(order.updatedAt))
                    """, logger: logger)
                try await PostgresOutbox.enqueue(connection, type: "order.created", payload: order, aggregateID: order.id, causedBy: cause, logger: logger)
                return order
            }
        } catch where PostgresServiceDatabase.isUniqueViolation(error, constraint: "orders_idempotency_key_unique") {
            // The same key raced in from another request (on any instance): the first one won.
            guard let idempotencyKey, let first = try await self.order(userID: order.userId, idempotencyKey: idempotencyKey) else { throw error }
            return first
        }
    }

    func order(userID: String, idempotencyKey: String) async throws -> Order? {
        try await database.first(
            "SELECT \(unescaped: Self.columns) FROM orders WHERE user_id = \(userID) AND idempotency_key = \(idempotencyKey)"
        ).map { try Self.order($0) }
    }

    func order(id: String) async throws -> Order? {
        try await database.first("SELECT \(unescaped: Self.columns) FROM orders WHERE id = \(id)").map { try Self.order($0) }
    }

    func list(userID: String, status: Order.Status?, after position: Int64?, limit: Int) async throws -> Page<Order> {
        let rows: PostgresRowSequence
        if let status {
            rows = try await database.query(
                """
                SELECT \(unescaped: Self.columns) FROM orders WHERE user_id = \(userID) AND position > \(position ?? 0) AND status = \(status.rawValue)
                ORDER BY position LIMIT \(limit + 1)
                """)
        } else {
            rows = try await database.query(
                "SELECT \(unescaped: Self.columns) FROM orders WHERE user_id = \(userID) AND position > \(position ?? 0) ORDER BY position LIMIT \(limit + 1)")
        }
        var orders: [Order] = []
        var positions: [Int64] = []
        for try await row in rows {
            orders.append(try Self.order(row))
            positions.append(try row.makeRandomAccess()[8].decode(Int64.self))
        }
        return Page("orders", items: Array(orders.prefix(limit)), next: orders.count > limit ? positions[limit - 1] : nil)
    }

    func settle(id: String, to status: Order.Status, reason: String?, eventID: String?, cause: Envelope, command: Command?) async throws -> Settlement? {
        try await database.transaction { connection -> Settlement? in
            let selected = try await connection.query("SELECT \(unescaped: Self.columns) FROM orders WHERE id = \(id) FOR UPDATE", logger: logger)
            var found: Order?
            for try await row in selected { found = try Self.order(row) }
            if let eventID, try await !PostgresProcessedMessages.record(eventID, on: connection, logger: logger) {
                return found.map { Settlement(order: $0, changed: false) }
            }
            guard var order = found else { return nil }
            guard order.status == .pending else { return Settlement(order: order, changed: false) }
            order.status = status
            order.reason = reason
            order.updatedAt = Date()
            try await connection.query(
                "UPDATE orders SET status = \(status.rawValue), reason = \(reason), updated_at = \(order.updatedAt) WHERE id = \(id)", logger: logger)
            try await PostgresOutbox.enqueue(connection, type: "order.\(status.rawValue)", payload: order, aggregateID: id, causedBy: cause, logger: logger)
            try await PostgresCommandInbox.record(command, reply: order, on: connection, logger: logger)
            return Settlement(order: order, changed: true)
        }
    }

    private static func order(_ row: PostgresRow) throws -> Order {
        let (id, userID, itemsJSON, totalCents, status, reason, createdAt, updatedAt) = try row.makeRandomAccess().decodeOrder()
        let items = (try? WireJSON.decodeTrusted([Item].self, from: Data(itemsJSON.utf8))) ?? []
        return Order(
            id: id, userId: userID, items: items, totalCents: totalCents, status: Order.Status(rawValue: status) ?? .pending, reason: reason,
            createdAt: createdAt, updatedAt: updatedAt)
    }
}

extension PostgresRandomAccessRow {
    /// The first eight columns of `PostgresOrderStore.columns`.
    fileprivate func decodeOrder() throws -> (String, String, String, Int, String, String?, Date, Date) {
        (
            try self[0].decode(String.self), try self[1].decode(String.self), try self[2].decode(String.self), try self[3].decode(Int.self),
            try self[4].decode(String.self), try self[5].decode(String?.self), try self[6].decode(Date.self), try self[7].decode(Date.self)
        )
    }
}
