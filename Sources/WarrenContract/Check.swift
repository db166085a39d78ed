/// A request type that states the constraints its JSON Schema states (lengths, ranges, formats).
/// Warren checks them right after decoding, before any handler runs.
public protocol Validatable {
    func validate() throws(ServiceError)
}

/// Small checks for `validate()`, each naming the field it failed on.
///
/// Lengths count Unicode code points, as JSON Schema's `minLength`/`maxLength` do (a
/// `Character` count would let one letter with 100,000 combining marks pass as 1). No string
/// checked here may hold NUL (U+0000): SQLite's text binding (GRDB's and `PointReader`'s),
/// bcrypt and C strings end there, so such a string would be stored, compared or hashed as
/// its prefix (`"\u0000secret"` as the empty password).
public enum Check {
    public static func length(_ value: String, _ field: String, _ range: ClosedRange<Int>) throws(ServiceError) {
        guard range.contains(value.unicodeScalars.count) else {
            throw .invalid("field '\(field)' must be \(range.lowerBound) to \(range.upperBound) characters long")
        }
        try noNUL(value, field)
    }

    /// Refuses U+0000, which C interfaces read as the end of the string.
    public static func noNUL(_ value: String, _ field: String) throws(ServiceError) {
        guard !value.utf8.contains(0) else {
            throw .invalid("field '\(field)' must not contain NUL (\\u0000): it could not be stored or compared exactly")
        }
    }

    /// Refuses control characters (C0, DEL, C1) in text shown on one line, such as a name:
    /// they cannot be stored exactly (NUL) or would rewrite logs and terminals.
    public static func singleLine(_ value: String, _ field: String) throws(ServiceError) {
        guard !value.unicodeScalars.contains(where: isControl) else {
            throw .invalid("field '\(field)' must not contain control characters (U+0000–U+001F, U+007F–U+009F)")
        }
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    public static func range<T: Comparable>(_ value: T, _ field: String, _ range: ClosedRange<T>) throws(ServiceError) {
        guard range.contains(value) else { throw .invalid("field '\(field)' must be from \(range.lowerBound) to \(range.upperBound)") }
    }

    public static func count<C: Collection>(_ value: C, _ field: String, _ range: ClosedRange<Int>) throws(ServiceError) {
        guard range.contains(value.count) else {
            throw .invalid("field '\(field)' must have \(range.lowerBound) to \(range.upperBound) items")
        }
    }

    /// `local@domain.tld`, at most 254 code points, without spaces or control characters.
    public static func email(_ value: String, _ field: String) throws(ServiceError) {
        let parts = value.split(separator: "@", omittingEmptySubsequences: false)
        guard value.unicodeScalars.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[1].contains("."),
            !parts[1].hasPrefix("."), !parts[1].hasSuffix("."), !value.contains(where: \.isWhitespace),
            !value.unicodeScalars.contains(where: isControl)
        else { throw .invalid("field '\(field)' must be an email address") }
    }

    public static func uuid(_ value: String, _ field: String) throws(ServiceError) {
        guard isUUID(value) else { throw .invalid("field '\(field)' must be a UUID") }
    }

    /// Whether `byte` is an ASCII hex digit, of either case.
    public static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits of either case.
    public static func isUUID(_ value: String) -> Bool {
        // By hand: Foundation's parser costs more than the lookup the id is for.
        value.utf8.count == 36
            && value.utf8.enumerated().allSatisfy { index, byte in
                index == 8 || index == 13 || index == 18 || index == 23 ? byte == UInt8(ascii: "-") : isHexDigit(byte)
            }
    }

    /// The one form ids are compared and looked up in: a UUID in lower case (clients may send
    /// either case); anything else unchanged.
    public static func canonicalID(_ value: String) -> String {
        isUUID(value) ? value.lowercased() : value
    }
}

/// An id field of a request or event body, decoded in the one form services compare and store
/// ids in (`Check.canonicalID`: a UUID in lower case), so that a client that sends an id in
/// upper case finds what it names. `Check.uuid` still validates it.
@propertyWrapper
public struct CanonicalID: Decodable, Sendable, Equatable {
    public var wrappedValue: String

    public init(wrappedValue: String) { self.wrappedValue = Check.canonicalID(wrappedValue) }

    public init(from decoder: any Decoder) throws {
        self.init(wrappedValue: try decoder.singleValueContainer().decode(String.self))
    }
}
