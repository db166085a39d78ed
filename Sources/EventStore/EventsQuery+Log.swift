import Warren

extension EventsQuery {
    /// The query as the log runs it: times in stored form, the cursor as a position, `*` as no
    /// type filter. Throws `invalid` for a time that is not ISO 8601.
    func eventQuery() throws(ServiceError) -> EventQuery {
        EventQuery(
            typePattern: type?.allSatisfy({ $0 == "*" }) == true ? nil : type, since: try Self.time(since, "since"), until: try Self.time(until, "until"),
            aggregateID: aggregateId, correlationID: correlationId, after: try position, limit: limit ?? Self.defaultLimit)
    }

    private static func time(_ text: String?, _ field: String) throws(ServiceError) -> String? {
        guard let text else { return nil }
        guard let date = EventTimestamp.parse(text) else {
            throw .invalid("field '\(field)' must be an ISO 8601 time such as 2026-11-20T14:13:42Z, or a date such as 2026-11-20")
        }
        return EventTimestamp.string(date)
    }
}
