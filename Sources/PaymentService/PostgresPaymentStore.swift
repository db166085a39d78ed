import Foundation
import Logging
import PostgresNIO
import Warren
import WarrenPostgres
import WarrenSQLite

/// The payments in a PostgreSQL database (`DATABASE_URL`) that several instances share: the
/// unique order id is the arbiter of "one payment per order" (`ON CONFLICT DO NOTHING`, and
/// the event only when a row went in), so the same `order.created` on two instances at once
/// charges once. `cancel` relies on the same key for its placeholder, and on the status for the
/// refund (`UPDATE … WHERE status = 'succeeded'`), so that it happens once per order.
struct PostgresPaymentStore: PaymentStore {
    let database: PostgresServiceDatabase

    static let migrations: [PostgresServiceDatabase.Migration] = [
        .init("payments", [
            """
            CREATE TABLE payments (
                id text PRIMARY KEY,
                order_id text NOT NULL UNIQUE,
                user_id text NOT NULL,
                amount_cents bigint NOT NULL,
                status text NOT NULL,
                reason text,
                created_at timestamptz NOT NULL
            )
            """
        ])
    ]

    func record(_ payment: Payment, cause: Envelope) async throws -> Bool {
        let logger = database.logger
        return try await database.transaction { connection in
            let inserted = try await connection.query(
                """
                INSERT INTO payments (id, order_id, user_id, amount_cents, status, reason, created_at)
                VALUES (\(payment.id), \(payment.orderId), \(payment.userId), \(payment.amountCents), \(payment.status.rawValue), \(payment.reason),
                        \(payment.createdAt))
                ON CONFLICT (order_id) DO NOTHING RETURNING 1
                """, logger: logger)
            var count = 0
            for try await _ in inserted { count += 1 }
            guard count > 0 else { return false }
            try await PostgresOutbox.enqueue(
                connection, type: "payment.\(payment.status.rawValue)", payload: payment, aggregateID: payment.orderId, causedBy: cause, logger: logger)
            return true
        }
    }

    func cancel(orderID: String, placeholder: Payment, cause: Envelope) async throws -> CancelOutcome {
        let logger = database.logger
        return try await database.transaction { connection in
            let inserted = try await connection.query(
                """
                INSERT INTO payments (id, order_id, user_id, amount_cents, status, reason, created_at)
                VALUES (\(placeholder.id), \(orderID), \(placeholder.userId), \(placeholder.amountCents), \(Payment.Status.cancelled.rawValue),
                        \(placeholder.reason), \(placeholder.createdAt))
                ON CONFLICT (order_id) DO NOTHING RETURNING 1
                """, logger: logger)
            var count = 0
            for try await _ in inserted { count += 1 }
            if count > 0 {
                try await PostgresOutbox.enqueue(
                    connection, type: "payment.cancelled", payload: placeholder, aggregateID: orderID, causedBy: cause, logger: logger)
                return .cancelled(placeholder)
            }
            // Only a succeeded payment is refunded, and only once: the status is the guard (a
            // concurrent refund waits for the row's lock, then finds it no longer succeeded).
            let updated = try await connection.query(
                """
                UPDATE payments SET status = \(Payment.Status.refunded.rawValue), reason = \(Payment.refundReason)
                WHERE order_id = \(orderID) AND status = \(Payment.Status.succeeded.rawValue)
                RETURNING id, order_id, user_id, amount_cents, status, reason, created_at
                """, logger: logger)
            // Each sequence read to its end before the next query on the connection.
            var refunded: [Payment] = []
            for try await row in updated { refunded.append(try Self.payment(row)) }
            if let payment = refunded.first {
                try await PostgresOutbox.enqueue(
                    connection, type: "payment.refunded", payload: payment, aggregateID: orderID, causedBy: cause, logger: logger)
                return .refunded(payment)
            }
            let rows = try await connection.query(
                "SELECT id, order_id, user_id, amount_cents, status, reason, created_at FROM payments WHERE order_id = \(orderID)", logger: logger)
            var current: [Payment] = []
            for try await row in rows { current.append(try Self.payment(row)) }
            guard let payment = current.first else { throw ServiceError.internal("payment for order \(orderID) vanished") }
            return .unchanged(payment)
        }
    }

    func payment(orderID: String) async throws -> Payment? {
        guard
            let row = try await database.first(
                "SELECT id, order_id, user_id, amount_cents, status, reason, created_at FROM payments WHERE order_id = \(orderID)")
        else { return nil }
        return try Self.payment(row)
    }

    private static func payment(_ row: PostgresRow) throws -> Payment {
        let (id, orderID, userID, amount, status, reason, createdAt) = try row.decode((String, String, String, Int, String, String?, Date).self)
        return Payment(
            id: id, orderId: orderID, userId: userID, amountCents: amount, status: Payment.Status(rawValue: status) ?? .failed, reason: reason,
            createdAt: createdAt)
    }
}
