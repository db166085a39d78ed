import Foundation
import Logging
import GRDB
import ServiceLifecycle
import Warren
import WarrenHost
import WarrenPostgres
import WarrenSQLite

/// The payment service (queue `payments.rpc`): charges every new order (simulated) and reports
/// `payment.succeeded` or `payment.failed`; a cancelled order is never left charged.
///
/// The charge is deterministic so that anyone can predict it: an order whose total is above
/// `PAYMENT_LIMIT_CENTS` (default 100000, i.e. 1,000.00) is declined, every other succeeds.
/// One payment per order, however often `order.created` arrives: the order id is unique in
/// the payments table and the payment and its event are written in one transaction.
///
/// `order.cancelled` settles the payment side of a cancelled order, once per order (each is a
/// transition of the order's one payment row, with its event in the same transaction):
/// - no payment yet (cancelled while `order.created` waited in the queue, or arrived after it):
///   a `cancelled` payment is stored in its place, with `payment.cancelled`, so that a later
///   `order.created` for the order finds it and charges nothing;
/// - a `succeeded` payment (charged before the cancellation reached this service): it becomes
///   `refunded`, with `payment.refunded`;
/// - a payment already `failed`, `cancelled` or `refunded`: nothing to do.
///
/// Environment (besides the service host's): `DATABASE_URL` (PostgreSQL, shared by instances)
/// or else `DATABASE_PATH` / `DATA_DIR` (SQLite),
/// `PAYMENT_LIMIT_CENTS`, `OUTBOX_RELAY`.
@main
struct PaymentService {
    static func main() async throws {
        if case .exit(let status) = commandLine.resolve() { exit(status) }
        exit(await ServiceProcess.run(name: "payments", defaultHTTPPort: httpPort) { resources in
            let environment = resources.environment
            let store: any PaymentStore
            let relay: OutboxRelay
            var storage: [any Service] = []
            if let database = try await PostgresServiceDatabase.open(environment: environment, migrations: PostgresPaymentStore.migrations, logger: resources.logger) {
                store = PostgresPaymentStore(database: database)
                relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
                storage = [database]  // first, so that it stops after everything that queries it
            } else {
                let database = try ServiceDatabase.open(service: "payments", environment: environment, migrations: SQLitePaymentStore.migrations)
                store = SQLitePaymentStore(database: database)
                relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
            }
            let payments = PaymentHandlers(
                store: store, relay: relay, rpc: resources.rpc,
                limitCents: try ServiceHost.number(environment, "PAYMENT_LIMIT_CENTS", 0...Int.max) ?? 100_000)
            return ServiceDefinition(
                handlers: payments.handlers, subscription: payments.orders,
                services: storage + ServiceDatabase.relays([relay], environment: environment, logger: resources.logger))
        })
    }
}

struct Payment: Codable, Sendable {
    /// `succeeded` and `failed` are the outcomes of a charge; `cancelled`: the order was
    /// cancelled before it was charged (nothing was, nothing will be); `refunded`: it was
    /// charged, then cancelled, and the charge was paid back.
    enum Status: String, WireEnum { case succeeded, failed, cancelled, refunded }

    var id: String
    var orderId: String
    var userId: String
    var amountCents: Int
    var status: Status
    var reason: String?
    var createdAt: Date
}

/// What the payment service reads of an `order.created` or `order.cancelled` event (both carry
/// the order). Anyone can publish one, so it is checked like a request: a total that is
/// negative or not a whole number of cents in 64 bits (`1e300`, `1.5`, `9223372036854775808`)
/// makes the event `invalid` and it is parked.
struct PlacedOrder: Decodable, Sendable, Validatable {
    @CanonicalID var id: String
    @CanonicalID var userId: String
    var totalCents: Int

    func validate() throws(ServiceError) {
        try Check.length(id, "id", 1...255)
        try Check.length(userId, "userId", 1...255)
        try Check.range(totalCents, "totalCents", 0...Int.max)
    }
}

struct PaymentQuery: Decodable, Sendable, Validatable {
    @CanonicalID var orderId: String
    func validate() throws(ServiceError) { try Check.uuid(orderId, "orderId") }
}

struct PaymentHandlers {
    let store: any PaymentStore
    let relay: OutboxRelay
    /// For asking the order service about an order before paying anything back (`cancelled`).
    let rpc: RPCClient
    let limitCents: Int

    var handlers: RPCHandlers {
        var handlers = RPCHandlers()
        handlers.on("payments.get", PaymentQuery.self) { request, _ in
            guard let payment = try await store.payment(orderID: request.orderId) else {
                throw ServiceError.notFound("no payment for order \(request.orderId)")
            }
            return payment
        }
        return handlers
    }

    var orders: Subscription {
        Subscription(["order.created", "order.cancelled"]) { event in
            let order = try event.decode(PlacedOrder.self)
            if event.type == "order.cancelled" {
                try await cancelled(order, event: event)
                return
            }
            let declined = order.totalCents > limitCents
            let payment = Payment(
                id: UUID().uuidString.lowercased(), orderId: order.id, userId: order.userId, amountCents: order.totalCents,
                status: declined ? .failed : .succeeded,
                reason: declined ? "amount \(order.totalCents) cents is above the limit of \(limitCents) cents" : nil, createdAt: Date())
            if try await store.record(payment, cause: event.envelope) {
                relay.wake()
                event.logger.info("payment \(payment.status.rawValue)", metadata: ["order_id": "\(order.id)", "amount_cents": "\(order.totalCents)"])
            } else {
                // Charged before, or cancelled before it could be: either way, not charged again.
                event.logger.info("order already has a payment: nothing to do", metadata: ["order_id": "\(order.id)"])
            }
        }
    }

    /// `order.cancelled`: refunds the order's payment if it succeeded, or stores a `cancelled`
    /// one in its place if there is none yet, so that the order is never left charged.
    private func cancelled(_ order: PlacedOrder, event: Event) async throws {
        try await checkCancelled(order, event: event)
        let placeholder = Payment(
            id: UUID().uuidString.lowercased(), orderId: order.id, userId: order.userId, amountCents: order.totalCents, status: .cancelled,
            reason: "the order was cancelled before it was charged", createdAt: Date())
        switch try await store.cancel(orderID: order.id, placeholder: placeholder, cause: event.envelope) {
        case .cancelled:
            relay.wake()
            event.logger.info("order cancelled before it was charged: it will not be", metadata: ["order_id": "\(order.id)"])
        case .refunded(let payment):
            relay.wake()
            event.logger.info("payment refunded", metadata: ["order_id": "\(order.id)", "amount_cents": "\(payment.amountCents)"])
        case .unchanged(let payment):
            event.logger.info("cancelled order's payment is settled: nothing to do", metadata: ["order_id": "\(order.id)", "status": "\(payment.status.rawValue)"])
        }
    }
}

extension PaymentHandlers {
    /// What the payment service reads of `orders.get`.
    private struct OrderState: Decodable {
        var status: String
        var userId: String
    }

    /// Acts on an `order.cancelled` only when the order service says the order is cancelled:
    /// anyone who may publish to `warren.events` can send one, and a forged one would pay back a
    /// confirmed order, or keep an order that was never cancelled from being charged. An event
    /// the order service contradicts (no such order, another status or owner) is `invalid` and
    /// parked with the reason; when the order service cannot answer, the event is retried.
    fileprivate func checkCancelled(_ order: PlacedOrder, event: Event) async throws(ServiceError) {
        let state: OrderState
        do {
            state = try await rpc.call("orders.get", ["id": order.id], as: OrderState.self, envelope: event.envelope.caused(type: "orders.get"))
        } catch where error.code == .notFound {
            throw .invalid("order.cancelled for order \(order.id), which the order service does not know: nothing done")
        }
        guard state.status == "cancelled" else {
            throw .invalid("order.cancelled for order \(order.id), which the order service has as \(state.status): nothing done")
        }
        guard Check.canonicalID(state.userId) == order.userId else {
            throw .invalid("order.cancelled for order \(order.id) names user \(order.userId); the order is user \(state.userId)'s: nothing done")
        }
    }
}

/// What `PaymentStore.cancel` did with an order's payment.
enum CancelOutcome: Sendable {
    /// There was none: the placeholder (`cancelled`) is stored, with `payment.cancelled`.
    case cancelled(Payment)
    /// It had succeeded: it is `refunded` now, with `payment.refunded`.
    case refunded(Payment)
    /// It was `failed`, `cancelled` or `refunded` already: nothing changed.
    case unchanged(Payment)
}

/// What the handlers need of storage; a protocol so that a PostgreSQL store can be added
/// without touching the handlers.
protocol PaymentStore: Sendable {
    /// Stores the payment and its event; false (and nothing stored) if the order already has one.
    func record(_ payment: Payment, cause: Envelope) async throws -> Bool
    /// The order was cancelled: stores `placeholder` (status `cancelled`) with
    /// `payment.cancelled` if the order has no payment, else moves a `succeeded` payment to
    /// `refunded` with `payment.refunded`, in one transaction; any other payment is left as it
    /// is. Each transition happens at most once per order, however often this is called.
    func cancel(orderID: String, placeholder: Payment, cause: Envelope) async throws -> CancelOutcome
    func payment(orderID: String) async throws -> Payment?
}

extension Payment {
    /// The reason a refunded payment carries.
    static let refundReason = "refunded: the order was cancelled after it was charged"
}

struct SQLitePaymentStore: PaymentStore {
    let database: DatabasePool

    static func migrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("payments") { db in
            try db.create(table: "payments") { table in
                table.column("id", .text).primaryKey()
                table.column("order_id", .text).notNull().unique()  // one payment per order
                table.column("user_id", .text).notNull()
                table.column("amount_cents", .integer).notNull()
                table.column("status", .text).notNull()
                table.column("reason", .text)
                table.column("created_at", .datetime).notNull()
            }
        }
    }

    func record(_ payment: Payment, cause: Envelope) async throws -> Bool {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO payments (id, order_id, user_id, amount_cents, status, reason, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [payment.id, payment.orderId, payment.userId, payment.amountCents, payment.status.rawValue, payment.reason, payment.createdAt])
            guard db.changesCount > 0 else { return false }
            try Outbox.enqueue(db, type: "payment.\(payment.status.rawValue)", payload: payment, aggregateID: payment.orderId, causedBy: cause)
            return true
        }
    }

    func cancel(orderID: String, placeholder: Payment, cause: Envelope) async throws -> CancelOutcome {
        try await database.write { db -> CancelOutcome in
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO payments (id, order_id, user_id, amount_cents, status, reason, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    placeholder.id, orderID, placeholder.userId, placeholder.amountCents, Payment.Status.cancelled.rawValue, placeholder.reason,
                    placeholder.createdAt,
                ])
            if db.changesCount > 0 {
                try Outbox.enqueue(db, type: "payment.cancelled", payload: placeholder, aggregateID: orderID, causedBy: cause)
                return .cancelled(placeholder)
            }
            // Only a succeeded payment is refunded, and only once: the status is the guard.
            try db.execute(
                sql: "UPDATE payments SET status = ?, reason = ? WHERE order_id = ? AND status = ?",
                arguments: [Payment.Status.refunded.rawValue, Payment.refundReason, orderID, Payment.Status.succeeded.rawValue])
            let refunded = db.changesCount > 0
            guard let payment = try Self.payment(orderID: orderID, in: db) else { throw ServiceError.internal("payment for order \(orderID) vanished") }
            guard refunded else { return .unchanged(payment) }
            try Outbox.enqueue(db, type: "payment.refunded", payload: payment, aggregateID: orderID, causedBy: cause)
            return .refunded(payment)
        }
    }

    func payment(orderID: String) async throws -> Payment? {
        try await database.read { db in try Self.payment(orderID: orderID, in: db) }
    }

    private static func payment(orderID: String, in db: Database) throws -> Payment? {
        try Row.fetchOne(db, sql: "SELECT * FROM payments WHERE order_id = ?", arguments: [orderID]).map { row in
            Payment(
                id: row["id"], orderId: row["order_id"], userId: row["user_id"], amountCents: row["amount_cents"],
                status: Payment.Status(rawValue: row["status"]) ?? .failed, reason: row["reason"], createdAt: row["created_at"])
        }
    }
}
