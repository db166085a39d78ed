public import Foundation

/// The one JSON dialect of the wire: ISO 8601 dates, sorted keys (stable output for tests and logs).
public enum WireJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// Dates are read by `WireTime`, not Foundation's `.iso8601`, which rolls impossible dates
    /// over (`2026-02-30` became 2 March): such a date fails to decode, naming the field.
    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            do throws(WireTime.Invalid) {
                return try WireTime(parsing: text).date
            } catch {
                throw FieldRefusal.error(
                    codingPath: decoder.codingPath, "is invalid: not an ISO 8601 time such as 2026-11-20T14:13:42Z: \(error.reason)")
            }
        }
        return decoder
    }

    // Shared by every call (each call keeps its own state; the options never change): making a
    // coder per message showed in the per-request profile.
    private static let sharedEncoder = encoder()
    private static let sharedDecoder = decoder()

    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        try sharedEncoder.encode(value)
    }

    /// Whether `data` can be JSON text in UTF-8: valid UTF-8 with no NUL byte. JSON has no raw
    /// NUL (a string escapes it), and UTF-16 or UTF-32 text of any JSON value has one in its
    /// first character, so this refuses those encodings before a decoder guesses them.
    public static func isUTF8Text(_ data: Data) -> Bool {
        !data.contains(0) && String(validating: data, as: UTF8.self) != nil
    }

    /// Decodes JSON this side trusts to follow the contract (a reply, a stored column) with the
    /// shared decoder, as it is: a failure is the `DecodingError`, and nothing is validated.
    public static func decodeTrusted<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try sharedDecoder.decode(type, from: data)
    }

    /// Decodes a request or reply, turning every decoding failure into `invalid` with the
    /// path of the failing field, so that a caller knows what to fix.
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(ServiceError) -> T {
        // Foundation's decoder also reads UTF-16 and UTF-32; the contract's JSON is UTF-8.
        guard isUTF8Text(data) else { throw .invalid("the body must be JSON in UTF-8") }
        let value: T
        do {
            value = try sharedDecoder.decode(type, from: data)
        } catch let error as DecodingError {
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty, let field = misfitNumber(in: data) {
                throw .invalid("field '\(field)' must be a whole number within 64 bits")
            }
            throw .invalid(describe(error))
        } catch {
            throw .invalid("the body is not valid JSON")
        }
        if let validatable = value as? any Validatable {
            try validatable.validate()
        }
        return value
    }

    /// The path of the first number no 64-bit integer holds (`1e300`, `1.5`, `2^63`): Foundation's
    /// JSONDecoder reports such a number in an `Int` field as "not valid JSON", with no field,
    /// which would leave the caller guessing. Only asked after decoding failed that way.
    static func misfitNumber(in data: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else { return nil }
        func visit(_ value: Any, _ path: String) -> String? {
            if let object = value as? [String: Any] {
                for (key, inner) in object.sorted(by: { $0.key < $1.key }) {
                    if let found = visit(inner, path.isEmpty ? key : "\(path).\(key)") { return found }
                }
            } else if let array = value as? [Any] {
                for (index, inner) in array.enumerated() {
                    if let found = visit(inner, "\(path)[\(index)]") { return found }
                }
            } else if !(value is Bool), let number = value as? NSNumber {
                let double = number.doubleValue
                if !double.isFinite || double.rounded() != double || abs(double) >= 9.223372036854775807e18 { return path }
            }
            return nil
        }
        return visit(object, "")
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context, appending key: (any CodingKey)? = nil) -> String {
            var parts: [String] = []
            for component in context.codingPath + (key.map { [$0] } ?? []) {
                if let index = component.intValue {
                    parts.append("[\(index)]")
                } else {
                    parts.append(parts.isEmpty ? component.stringValue : ".\(component.stringValue)")
                }
            }
            return parts.joined()
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "field '\(path(context, appending: key))' is required"
        case .typeMismatch(let type, let context):
            let field = path(context)
            return field.isEmpty ? "the body must be a JSON object" : "field '\(field)' must be \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "field '\(path(context))' must be \(typeName(type)), not null"
        case .dataCorrupted(let context):
            let field = path(context)
            if field.isEmpty { return "the body is not valid JSON" }
            // Only Warren's own words: Foundation's and Swift's (a UUID, an enum's raw value)
            // speak of Swift types, not of the contract.
            guard let refusal = context.underlyingError as? FieldRefusal else { return "field '\(field)' is invalid" }
            return "field '\(field)' \(refusal.predicate)"
        @unknown default:
            return "the body could not be decoded"
        }
    }

    /// Why a field's value was refused, in the contract's terms, as the end of a sentence that
    /// begins "field '<path>'" ("must be one of pending, confirmed"). `describe` passes on a
    /// `dataCorrupted` error's text only when its underlying error is one of these.
    public struct FieldRefusal: Error, Sendable {
        public let predicate: String

        public init(_ predicate: String) { self.predicate = predicate }

        /// The `DecodingError` a decoder throws for a refused value at `codingPath`.
        public static func error(codingPath: [any CodingKey], _ predicate: String) -> DecodingError {
            .dataCorrupted(.init(codingPath: codingPath, debugDescription: predicate, underlyingError: FieldRefusal(predicate)))
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        case is Bool.Type: "a boolean"
        case is [Any].Type: "an array"
        default: "\(type)".hasPrefix("Array") ? "an array" : "an object"
        }
    }
}
