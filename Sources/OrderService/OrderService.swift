import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Warren
import WarrenHost
import WarrenPostgres
import WarrenSQLite

/// The order service (queue `orders.rpc`): places orders for users it checks with the user
/// service over RPC, stores each with its `order.created` event in one transaction (outbox),
/// and settles it when the payment service reports: `payment.succeeded` → confirmed,
/// `payment.failed` → cancelled with the reason. A payment outcome for an order no longer
/// pending changes nothing: a charge for a cancelled order is refunded by the payment service,
/// which takes `order.cancelled` too.
///
/// Environment (besides the service host's): `DATABASE_URL` (PostgreSQL, shared by instances)
/// or else `DATABASE_PATH` / `DATA_DIR` (SQLite), `OUTBOX_RELAY`
/// (`paused` keeps events in the outbox; see README).
@main
struct OrderService {
    static func main() async throws {
        if case .exit(let status) = commandLine.resolve() { exit(status) }
        exit(await ServiceProcess.run(name: "orders", defaultHTTPPort: httpPort) { resources in
            let store: any OrderStore
            let relay: OutboxRelay
            let inbox: any CommandInbox & Service
            var storage: [any Service] = []
            if let database = try await PostgresServiceDatabase.open(environment: resources.environment, migrations: PostgresOrderStore.migrations, logger: resources.logger) {
                store = PostgresOrderStore(database: database)
                relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
                inbox = PostgresCommandInbox(database: database, logger: resources.logger)
                storage = [database]  // first, so that it stops after everything that queries it
            } else {
                let database = try ServiceDatabase.open(service: "orders", environment: resources.environment, migrations: SQLiteOrderStore.migrations)
                store = SQLiteOrderStore(database: database)
                relay = OutboxRelay(database: database, publisher: resources.events, logger: resources.logger)
                inbox = SQLiteCommandInbox(database: database, logger: resources.logger)
            }
            let orders = OrderHandlers(store: store, relay: relay)
            return ServiceDefinition(
                handlers: orders.handlers, subscription: orders.payments,
                services: storage + ServiceDatabase.relays([relay], environment: resources.environment, logger: resources.logger) + [inbox],
                inbox: inbox)
        })
    }
}

struct OrderHandlers {
    let store: any OrderStore
    let relay: OutboxRelay

    var handlers: RPCHandlers {
        var handlers = RPCHandlers()
        // A command: a redelivery of one that committed (same message_id) is answered from the
        // inbox, which `store.create` writes in the order's transaction.
        handlers.onCommand("orders.create", CreateOrder.self) { request, context in
            if let key = request.idempotencyKey, let first = try await store.order(userID: request.userId, idempotencyKey: key) {
                return try sameOrder(first, as: request)
            }
            // The user must exist now; `not_found` reaches the caller as it is. Nothing is stored
            // yet, so whatever became of `users.get`, this order certainly was not placed.
            do {
                _ = try await context.call("users.get", ["id": request.userId], as: UserRef.self)
            } catch let error as ServiceError where error.code == .timeout || error.code == .unavailable {
                throw ServiceError.unavailable("could not check the user (\(error.message)); no order was placed")
            }
            let now = Date()
            let order = Order(
                id: UUID().uuidString.lowercased(), userId: request.userId, items: request.items, totalCents: request.totalCents,
                status: .pending, createdAt: now, updatedAt: now)
            let stored = try await store.create(order, idempotencyKey: request.idempotencyKey, cause: context.envelope, command: context.command)
            guard stored.id == order.id else { return try sameOrder(stored, as: request) }
            relay.wake()
            context.logger.info("order placed", metadata: ["order_id": "\(order.id)", "total_cents": "\(order.totalCents)"])
            return stored
        }
        handlers.on("orders.get", OrderID.self) { request, _ in
            guard let order = try await store.order(id: request.id) else { throw ServiceError.notFound("no order \(request.id)") }
            return order
        }
        handlers.on("orders.list", ListOrders.self) { request, _ in
            try await store.list(userID: request.userId, status: request.status, after: request.cursor.map { try PageCursor.position($0) }, limit: request.limit ?? 20)
        }
        handlers.onCommand("orders.cancel", OrderID.self) { request, context in
            guard
                let settled = try await store.settle(
                    id: request.id, to: .cancelled, reason: "cancelled by the customer", eventID: nil, cause: context.envelope,
                    command: context.command)
            else { throw ServiceError.notFound("no order \(request.id)") }
            let order = settled.order
            if order.status == .confirmed { throw ServiceError.conflict("order \(request.id) is confirmed and paid: it can no longer be cancelled") }
            if settled.changed {
                Counter(label: "orders_settled_total", dimensions: [("status", "cancelled")]).increment()
                relay.wake()
            }
            return order
        }
        return handlers
    }

    /// `payment.succeeded` confirms a pending order, `payment.failed` cancels it; each payment
    /// event is applied once (its id is recorded in the same transaction as the change).
    var payments: Subscription {
        Subscription(["payment.succeeded", "payment.failed"]) { event in
            let payment = try event.decode(PaymentOutcome.self)
            let target: Order.Status = event.type == "payment.succeeded" ? .confirmed : .cancelled
            let reason = target == .cancelled ? "payment failed: \(payment.reason ?? "declined")" : nil
            guard
                let settled = try await store.settle(
                    id: payment.orderId, to: target, reason: reason, eventID: event.envelope.messageID, cause: event.envelope, command: nil)
            else { throw ServiceError.invalid("payment for an unknown order \(payment.orderId)") }
            let order = settled.order
            guard settled.changed else {
                if order.status != target {
                    // Paid after the customer cancelled: the order stays cancelled, and the payment
                    // service refunds the charge when it takes this order's `order.cancelled`.
                    event.logger.notice(
                        "payment outcome for an order that is no longer pending: the order is left as it is (a cancelled order's charge is refunded by the payment service)",
                        metadata: ["order_id": "\(order.id)", "status": "\(order.status.rawValue)", "payment": "\(event.type)"])
                }
                return  // settled before (or this event applied before): nothing new to relay or count
            }
            relay.wake()
            event.logger.info("order \(target.rawValue)", metadata: ["order_id": "\(order.id)"])
            // Saga outcomes for the dashboard, counted once per order (a redelivery changes nothing).
            Counter(label: "orders_settled_total", dimensions: [("status", target.rawValue)]).increment()
        }
    }

    /// A repeated idempotency key must mean the same order; anything else is a client bug.
    private func sameOrder(_ order: Order, as request: CreateOrder) throws(ServiceError) -> Order {
        guard order.items == request.items else {
            throw .conflict("idempotencyKey '\(request.idempotencyKey ?? "")' was already used for a different order (\(order.id))")
        }
        return order
    }
}
