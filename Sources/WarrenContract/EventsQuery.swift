/// The body of the event store's `events.query` (schemas/event-store/events.query.request.schema.json),
/// one type for the store that answers it and the clients that send it (`warren replay`), so
/// that a filter is added in one place. Every field is optional.
///
/// Decoding refuses a field it does not know instead of ignoring it: a misspelt filter would
/// otherwise silently widen the answer, and a replay with it would republish far too much.
public struct EventsQuery: Codable, Sendable, Equatable, Validatable {
    public static let maxLimit = FieldLimits.eventsQueryLimit.range.upperBound
    public static let defaultLimit = 100

    /// An event type or glob (`order.*`); `*` alone matches every type.
    public var type: String?
    /// Wire times (`WireTime`: RFC 3339 such as `2026-11-20T14:13:42Z`, or a day); `since`
    /// inclusive, `until` exclusive. An impossible time (`2026-02-30`) is `invalid`.
    public var since: String?
    public var until: String?
    public var aggregateId: String?
    public var correlationId: String?
    /// The `next` of the previous page.
    public var after: String?
    public var limit: Int?

    public init(
        type: String? = nil, since: String? = nil, until: String? = nil, aggregateId: String? = nil, correlationId: String? = nil,
        after: String? = nil, limit: Int? = nil
    ) {
        self.type = type
        self.since = since
        self.until = until
        self.aggregateId = aggregateId
        self.correlationId = correlationId
        self.after = after
        self.limit = limit
    }

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case type, since, until, aggregateId, correlationId, after, limit
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        if let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw WireJSON.FieldRefusal.error(
                codingPath: [AnyKey(stringValue: unknown)],
                "is invalid: not a filter of events.query; known: \(CodingKeys.allCases.map(\.stringValue).joined(separator: ", "))")
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try container.decodeIfPresent(String.self, forKey: .type)
        since = try container.decodeIfPresent(String.self, forKey: .since)
        until = try container.decodeIfPresent(String.self, forKey: .until)
        aggregateId = try container.decodeIfPresent(String.self, forKey: .aggregateId)
        correlationId = try container.decodeIfPresent(String.self, forKey: .correlationId)
        after = try container.decodeIfPresent(String.self, forKey: .after)
        limit = try container.decodeIfPresent(Int.self, forKey: .limit)
    }

    /// Every field, so that a client (`warren replay`) and the event store refuse the same.
    public func validate() throws(ServiceError) {
        try Check.range(limit ?? Self.defaultLimit, "limit", FieldLimits.eventsQueryLimit.range)
        if let since { try Check.time(since, "since") }
        if let until { try Check.time(until, "until") }
        if let type { try Check.length(type, "type", FieldLimits.eventsQueryText.range) }
        if let aggregateId { try Check.length(aggregateId, "aggregateId", FieldLimits.eventsQueryAggregateID.range) }
        if let correlationId { try Check.length(correlationId, "correlationId", FieldLimits.eventsQueryCorrelationID.range) }
        _ = try position
    }

    /// `after` as the position it stands for; nil for the first page.
    public var position: Int64? {
        get throws(ServiceError) {
            guard let after else { return nil }
            guard let value = Int64(after), value >= 0, after.allSatisfy(\.isASCII) else {
                throw .invalid("field 'after' must be a cursor: the 'next' of a previous events.query reply")
            }
            return value
        }
    }
}
