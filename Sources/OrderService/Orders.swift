import Foundation
import Warren
import WarrenSQLite

struct Item: Codable, Sendable, Equatable {
    var sku: String
    var quantity: Int
    var unitPriceCents: Int
}

/// An order as every caller and every `order.*` event sees it.
struct Order: Codable, Sendable, Equatable {
    enum Status: String, WireEnum { case pending, confirmed, cancelled }

    var id: String
    var userId: String
    var items: [Item]
    var totalCents: Int
    var status: Status
    /// Why it was cancelled.
    var reason: String?
    var createdAt: Date
    var updatedAt: Date
}

struct CreateOrder: Decodable, Sendable, Validatable {
    @CanonicalID var userId: String
    var items: [Item]
    /// The same key from the same user returns the first order instead of placing another.
    var idempotencyKey: String?

    func validate() throws(ServiceError) {
        try Check.uuid(userId, "userId")
        try Check.count(items, "items", FieldLimits.orderItems.range)
        for (index, item) in items.enumerated() {
            try Check.length(item.sku, "items[\(index)].sku", FieldLimits.sku.range)
            try Check.range(item.quantity, "items[\(index)].quantity", FieldLimits.quantity.range)
            try Check.range(item.unitPriceCents, "items[\(index)].unitPriceCents", FieldLimits.unitPriceCents.range)
        }
        if let idempotencyKey { try Check.length(idempotencyKey, "idempotencyKey", FieldLimits.idempotencyKey.range) }
    }

    /// At most 100 items × 10,000 × 100,000,000 cents: no overflow in 64 bits.
    var totalCents: Int { items.reduce(0) { $0 + $1.quantity * $1.unitPriceCents } }
}

struct OrderID: Decodable, Sendable, Validatable {
    @CanonicalID var id: String
    func validate() throws(ServiceError) { try Check.uuid(id, "id") }
}

struct ListOrders: Decodable, Sendable, Validatable {
    @CanonicalID var userId: String
    var status: Order.Status?
    var limit: Int?
    var cursor: String?

    func validate() throws(ServiceError) {
        try Check.uuid(userId, "userId")
        if let limit { try Check.range(limit, "limit", FieldLimits.pageLimit.range) }
        if let cursor { _ = try PageCursor.position(cursor) }
    }
}

/// What the order service reads of `users.get`'s reply (a tolerant reader: only what it needs).
struct UserRef: Codable, Sendable {
    var id: String
}

/// What the order service reads of a `payment.succeeded` / `payment.failed` event.
struct PaymentOutcome: Decodable, Sendable, Validatable {
    @CanonicalID var orderId: String
    var reason: String?

    /// Anyone may publish a payment event: the order id must be one, and the reason is kept
    /// with the order as text.
    func validate() throws(ServiceError) {
        try Check.uuid(orderId, "orderId")
        if let reason { try Check.length(reason, "reason", 0...1_000) }
    }
}
