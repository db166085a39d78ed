/// A closed set of names on the wire (an order's status, a role, an error code). Decoding one
/// that is not in the set fails naming the allowed ones — "field 'status' must be one of
/// pending, confirmed, cancelled" — rather than with Swift's own text ("Cannot initialize
/// Status from invalid String value …"), which `WireJSON.describe` never passes on.
public protocol WireEnum: RawRepresentable<String>, CaseIterable, Codable, Sendable {}

extension WireEnum {
    /// The raw value, or a `DecodingError` whose `WireJSON.FieldRefusal` lists the allowed values.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: text) else {
            throw WireJSON.FieldRefusal.error(codingPath: decoder.codingPath, "must be one of \(Self.allowedValues)")
        }
        self = value
    }

    /// The allowed values, in declaration order, separated by ", ".
    public static var allowedValues: String {
        allCases.map(\.rawValue).joined(separator: ", ")
    }
}
