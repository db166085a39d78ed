/// What an event type may be: it is also the event's routing key on `warren.events`, so it
/// names one event and never a pattern. The rule of schemas/warren/event-headers.schema.json
/// (`type`), in code: a lower-case word, a dot, a lower-case word, then more words after dots
/// (`order.created`, `order.item-added`, `payment.v2.failed`), never an empty one (`order.`,
/// `a..b`); words are lower-case letters, digits and hyphens; at most 255 bytes, what AMQP carries. `*`, `#`,
/// spaces, upper case and the empty string are not event types: a topic exchange would read
/// `order.*` or `#` in a binding as a pattern, and a subscriber could never ask for `a b`.
public enum EventType {
    /// The schema's `pattern`, held against the schema by WarrenContractTests.
    public static let pattern = "^[a-z][a-z0-9-]*\\.[a-z][a-z0-9-]*(\\.[a-z0-9-]+)*$"
    /// An AMQP short string (routing key, `type` property).
    public static let maxBytes = 255

    /// Whether `type` matches `pattern` and fits `maxBytes`. By hand: no regular expression
    /// engine in the contract target.
    public static func isValid(_ type: String) -> Bool {
        let bytes = Array(type.utf8)
        guard bytes.count <= maxBytes else { return false }
        func isLower(_ byte: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
        func isDigit(_ byte: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) }
        let words = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        // The first two words start with a letter; no word is empty.
        guard words.count >= 2, words.allSatisfy({ !$0.isEmpty }), isLower(words[0].first ?? 0), isLower(words[1].first ?? 0) else { return false }
        return words.allSatisfy { word in word.allSatisfy { isLower($0) || isDigit($0) || $0 == UInt8(ascii: "-") } }
    }

    /// `invalid`, naming `field`, unless `type` is an event type (`isValid`).
    public static func check(_ type: String, _ field: String) throws(ServiceError) {
        guard isValid(type) else {
            throw .invalid(
                "\(field) must be an event type as the contract defines it (\(pattern), at most \(maxBytes) bytes), e.g. order.created: "
                    + "it is the routing key of one event, never a pattern (* or #), and has no spaces or upper case")
        }
    }
}
