/// One limit of a request field, with the JSON Schemas in `schemas/` that state it, so that a
/// test (WarrenContractTests) can hold the code's limit against the schema's.
public struct FieldLimit: Sendable {
    /// Which JSON Schema keywords state the range.
    public enum Keyword: Sendable {
        /// `minLength`/`maxLength`: Unicode code points (`String.unicodeScalars.count`), as
        /// JSON Schema counts them and `Check.length` does.
        case length
        /// `minimum`/`maximum` of an integer.
        case value
        /// `minItems`/`maxItems` of an array.
        case items
    }

    /// Paths under `schemas/`.
    public let schemas: [String]
    /// The field's place in each schema, as keys from its root (`properties`, `name`).
    public let path: [String]
    public let keyword: Keyword
    public let range: ClosedRange<Int>
}

/// The limits of the request fields the services check by hand (`Validatable`), in one place
/// and each with the schemas that state it: the code validates with these, the contract test
/// compares them with the schemas, so neither can drift alone.
public enum FieldLimits {
    public static let userName = FieldLimit(
        schemas: ["users/users.create.request.schema.json", "users/users.update.request.schema.json"], path: ["properties", "name"],
        keyword: .length, range: 1...100)
    /// The schemas of users.create and users.update state only the maximum (`format: email`
    /// needs at least `a@b.c`); users.authenticate states 1 to 254.
    public static let email = FieldLimit(
        schemas: ["users/users.authenticate.request.schema.json"], path: ["properties", "email"], keyword: .length, range: 1...254)
    /// In code points, as the schema counts. bcrypt reads at most 72 bytes besides, so the
    /// UTF-8 form must also fit in `bcryptBytes` (a rule JSON Schema cannot state; the schema's
    /// description says it).
    public static let password = FieldLimit(
        schemas: ["users/users.create.request.schema.json"], path: ["properties", "password"], keyword: .length, range: 8...72)
    /// A password offered to users.authenticate: any length a stored one could have had.
    public static let credentialsPassword = FieldLimit(
        schemas: ["users/users.authenticate.request.schema.json"], path: ["properties", "password"], keyword: .length, range: 1...72)
    /// The most UTF-8 bytes of a password bcrypt keeps: a longer one would be compared as its prefix.
    public static let bcryptBytes = 72
    public static let pageLimit = FieldLimit(
        schemas: ["users/users.list.request.schema.json", "orders/orders.list.request.schema.json"], path: ["properties", "limit"],
        keyword: .value, range: 1...100)
    public static let orderItems = FieldLimit(
        schemas: ["orders/orders.create.request.schema.json"], path: ["properties", "items"], keyword: .items, range: 1...100)
    public static let sku = FieldLimit(
        schemas: ["orders/order.schema.json"], path: ["$defs", "item", "properties", "sku"], keyword: .length, range: 1...64)
    public static let quantity = FieldLimit(
        schemas: ["orders/order.schema.json"], path: ["$defs", "item", "properties", "quantity"], keyword: .value, range: 1...10_000)
    public static let unitPriceCents = FieldLimit(
        schemas: ["orders/order.schema.json"], path: ["$defs", "item", "properties", "unitPriceCents"], keyword: .value,
        range: 0...100_000_000)
    public static let idempotencyKey = FieldLimit(
        schemas: ["orders/orders.create.request.schema.json"], path: ["properties", "idempotencyKey"], keyword: .length, range: 1...128)
    public static let eventsQueryLimit = FieldLimit(
        schemas: ["event-store/events.query.request.schema.json"], path: ["properties", "limit"], keyword: .value, range: 1...1000)
    /// `type`, `aggregateId` and `correlationId` of events.query, and events.flow's `correlationId`.
    public static let eventsQueryText = FieldLimit(
        schemas: ["event-store/events.query.request.schema.json"], path: ["properties", "type"], keyword: .length, range: 1...255)
    public static let eventsQueryAggregateID = FieldLimit(
        schemas: ["event-store/events.query.request.schema.json"], path: ["properties", "aggregateId"], keyword: .length, range: 1...255)
    public static let eventsQueryCorrelationID = FieldLimit(
        schemas: ["event-store/events.query.request.schema.json", "event-store/events.flow.request.schema.json"],
        path: ["properties", "correlationId"], keyword: .length, range: 1...255)

    /// Every limit above, for the test that reads the schemas.
    public static let all: [FieldLimit] = [
        userName, email, password, credentialsPassword, pageLimit, orderItems, sku, quantity, unitPriceCents, idempotencyKey,
        eventsQueryLimit, eventsQueryText, eventsQueryAggregateID, eventsQueryCorrelationID,
    ]
}
