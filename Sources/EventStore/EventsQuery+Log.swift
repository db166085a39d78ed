import Warren

/// The body of `events.query` (schemas/event-store/events.query.request.schema.json). Every field
/// is optional; a field the store does not know is refused rather than ignored, since a
/// misspelt filter would otherwise silently widen the answer.
struct QueryRequest: Decodable, Sendable, Validatable {
    static let maxLimit = 1000
    static let defaultLimit = 100

    var type: String?
    var since: String?
    var until: String?
    var aggregateId: String?
    var correlationId: String?
    var after: String?
    var limit: Int?

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case type, since, until, aggregateId, correlationId, after, limit
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        if let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: [AnyKey(stringValue: unknown)],
                    debugDescription: "not a filter of events.query; known: \(CodingKeys.allCases.map(\.stringValue).joined(separator: ", "))"))
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

    func validate() throws(ServiceError) { _ = try eventQuery() }

    /// The query, with times in stored form and the cursor as a position.
    func eventQuery() throws(ServiceError) -> EventQuery {
        let limit = limit ?? Self.defaultLimit
        try Check.range(limit, "limit", 1...Self.maxLimit)
        if let type { try Check.length(type, "type", 1...255) }
        if let aggregateId { try Check.length(aggregateId, "aggregateId", 1...255) }
        if let correlationId { try Check.length(correlationId, "correlationId", 1...255) }
        var position: Int64?
        if let after {
            guard let value = Int64(after), value >= 0, after.allSatisfy(\.isASCII) else {
                throw .invalid("field 'after' must be a cursor: the 'next' of a previous events.query reply")
            }
            position = value
        }
        return EventQuery(
            // "*" matches every type: no filter at all.
            typePattern: type?.allSatisfy({ $0 == "*" }) == true ? nil : type, since: try Self.time(since, "since"), until: try Self.time(until, "until"),
            aggregateID: aggregateId, correlationID: correlationId, after: position, limit: limit)
    }

    private static func time(_ text: String?, _ field: String) throws(ServiceError) -> String? {
        guard let text else { return nil }
        guard let date = EventTimestamp.parse(text) else {
            throw .invalid("field '\(field)' must be an ISO 8601 time such as 2026-11-20T14:13:42Z, or a date such as 2026-11-20")
        }
        return EventTimestamp.string(date)
    }
}
