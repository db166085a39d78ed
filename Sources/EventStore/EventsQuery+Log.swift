import Warren
import WarrenContract

extension EventsQuery {
    /// The query as the log runs it: times in stored form, the cursor as a position, `*` as no
    /// type filter. Throws `invalid` for a time that is not a wire time (an impossible date included).
    func eventQuery() throws(ServiceError) -> EventQuery {
        EventQuery(
            typePattern: type?.allSatisfy({ $0 == "*" }) == true ? nil : type, since: try Self.time(since, "since"), until: try Self.time(until, "until"),
            aggregateID: aggregateId, correlationID: correlationId, after: try position, limit: limit ?? Self.defaultLimit)
    }

    /// The stored form of a wire time (`WireTime`, the one parser of times from outside).
    private static func time(_ text: String?, _ field: String) throws(ServiceError) -> String? {
        guard let text else { return nil }
        return try Check.time(text, field).utcMilliseconds
    }
}
