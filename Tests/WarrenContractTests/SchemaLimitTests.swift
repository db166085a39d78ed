import Foundation
import Testing
import WarrenContract

/// The code's request limits (`FieldLimits`, what `Validatable` checks with) against the JSON
/// Schemas in `schemas/` that state them: a change to either side alone fails here.
@Suite("Request limits agree with schemas/")
struct SchemaLimitTests {
    static let schemas = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../schemas").standardized

    static func keywords(_ keyword: FieldLimit.Keyword) -> (String, String) {
        switch keyword {
        case .length: ("minLength", "maxLength")
        case .value: ("minimum", "maximum")
        case .items: ("minItems", "maxItems")
        }
    }

    @Test("every limit equals the schema's", arguments: FieldLimits.all.indices)
    func limit(index: Int) throws {
        let limit = FieldLimits.all[index]
        #expect(!limit.schemas.isEmpty)
        for schema in limit.schemas {
            let data = try Data(contentsOf: Self.schemas.appendingPathComponent(schema))
            var node = try JSONSerialization.jsonObject(with: data)
            for key in limit.path {
                node = try #require((node as? [String: Any])?[key], "\(schema) has no \(limit.path.joined(separator: "/"))")
            }
            let field = try #require(node as? [String: Any])
            let (minimum, maximum) = Self.keywords(limit.keyword)
            let where_ = "\(schema) \(limit.path.joined(separator: "/"))"
            #expect((field[maximum] as? Int) == limit.range.upperBound, "\(where_): \(maximum)")
            // A schema may leave the minimum out where the code's is the type's own (0 for a length or a count).
            #expect((field[minimum] as? Int ?? 0) == limit.range.lowerBound, "\(where_): \(minimum)")
        }
    }

    @Test("lengths count code points, as JSON Schema does: not bytes, not grapheme clusters")
    func codePoints() throws {
        // One grapheme cluster of 101 code points: a name of one character for `Character`,
        // too long for the schema's maxLength 100.
        let combining = "e" + String(repeating: "\u{301}", count: 100)
        #expect(combining.count == 1)
        #expect(throws: ServiceError.self) { try Check.length(combining, "name", FieldLimits.userName.range) }
        // 100 code points of 4 bytes each: 400 bytes, within the schema's 100.
        try Check.length(String(repeating: "🦊", count: 100), "name", FieldLimits.userName.range)
        #expect(throws: ServiceError.self) { try Check.length(String(repeating: "🦊", count: 101), "name", FieldLimits.userName.range) }
        #expect(throws: ServiceError.self) { try Check.length("", "name", FieldLimits.userName.range) }
        #expect(throws: ServiceError.self) { try Check.length("a\u{0}b", "name", FieldLimits.userName.range) }
    }
}
