import Foundation
import Testing
import WarrenContract

/// `EventType`, the one rule for an event type (`warren publish` refuses what it refuses),
/// against the pattern in schemas/warren/event-headers.schema.json.
@Suite("Event types follow the schema's pattern")
struct EventTypeTests {
    static let schema = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../schemas/warren/event-headers.schema.json").standardized

    static let valid = ["order.created", "order.item-added", "a.b", "payment.v2.failed", "x1-y.z", "a.b.1c", "a.b.-c", "order.created." + String(repeating: "a", count: 241)]
    static let hostile = [
        "", "#", "*", "order.*", "order.#", "a b", "a.b c", "Order.created", "order.Created", "order", ".created", "order.",
        "1order.created", "-a.b", "order..created", "a.-b", "order.created\u{0}", "order.créé", "order.created\n", "order\u{202E}.x",
        "order.created." + String(repeating: "a", count: 242), "ｏrder.created",
        "x1-y.z.", "order.cancelled.", "a.b..c", "a.b.", "a..", "a.b.c.",
    ]

    @Test("the code's pattern is the schema's")
    func patternIsTheSchemas() throws {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.schema)) as? [String: Any]
        let type = try #require((object?["properties"] as? [String: Any])?["type"] as? [String: Any])
        #expect(type["pattern"] as? String == EventType.pattern)
    }

    @Test("valid and hostile types are judged as the schema's pattern judges them", arguments: valid + hostile)
    func agreesWithThePattern(_ type: String) throws {
        let regex = try NSRegularExpression(pattern: EventType.pattern)
        // The whole string: ICU's `$` also matches before a final line break.
        let whole = NSRange(type.startIndex..., in: type)
        let matches = regex.firstMatch(in: type, range: whole)?.range == whole && type.utf8.count <= EventType.maxBytes
        #expect(EventType.isValid(type) == matches, "\(type.debugDescription)")
        #expect(EventType.isValid(type) == Self.valid.contains(type), "\(type.debugDescription)")
    }
}
