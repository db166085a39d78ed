import Foundation
import Testing
import Warren
import WarrenAMQP

/// A copy set aside must fit in a frame with room for the broker's `x-death`, whatever the
/// original's headers: pure, no broker.
@Suite("Dead-letter copies that fit")
struct DeadLetterCopyTests {
    static let limit = 131_072 - 8 - DeadLettering.brokerHeadersAllowance

    static func original(_ headers: AMQPTable) -> AMQPProperties {
        AMQPProperties(contentType: "application/json", headers: headers, messageID: "m-1", type: "order.created")
            .deadLettered(error: "unknown operation", originalRoutingKey: "order.created")
    }

    @Test("small headers are kept as they are")
    func smallHeadersKept() throws {
        let properties = Self.original(["x-tenant": "acme"])
        #expect(properties.fitting(contentHeaderLimit: Self.limit).headers == properties.headers)
    }

    @Test(
        "too-large headers: the largest are left out and named, the copy fits, its reason and the rest are kept",
        arguments: [
            ("one near-frame header", ["x-padding": AMQPFieldValue.string(String(repeating: "p", count: 130_000))]),
            (
                "12,000 small headers",
                AMQPTable(uniqueKeysWithValues: (0..<12_000).map { ("h\($0)", AMQPFieldValue.string("0123")) })
            ),
            (
                "two large and one small",
                ["big-1": .string(String(repeating: "a", count: 70_000)), "big-2": .string(String(repeating: "b", count: 60_000)), "x-tenant": "acme"]
            ),
        ] as [(String, AMQPTable)])
    func largeHeadersDropped(label: String, headers: AMQPTable) throws {
        let started = ContinuousClock.now
        let copy = Self.original(headers).fitting(contentHeaderLimit: Self.limit)
        #expect(ContinuousClock.now - started < .seconds(2), "\(label): one pass, not one per header")
        #expect(try copy.contentHeaderSize <= Self.limit, "\(label)")
        let note = try #require(copy.headers?[AMQPProperties.droppedHeadersHeader]?.stringValue, "\(label)")
        #expect(!note.isEmpty && note.utf8.count <= 1024, "\(label): \(note.prefix(200))")
        #expect(copy.headers?[WireHeader.error] == "unknown operation", "\(label)")
        #expect(copy.headers?[WireHeader.originalRoutingKey] == "order.created", "\(label)")
        if headers["x-tenant"] != nil { #expect(copy.headers?["x-tenant"] == "acme", "\(label)") }
    }
}
