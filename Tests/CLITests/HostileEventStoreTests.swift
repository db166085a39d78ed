// The event store's replies are input too: a replay reads numbers, times, headers and cursors
// from them. Whatever a page holds, the replay sends it or stops with a clear error; no trap.
import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// One `events.query` page an event store might send, and what the replay must make of it.
struct HostilePage: Sendable, CustomTestStringConvertible {
    let name: String
    /// The first page; later pages are empty unless `loops`.
    let page: String
    /// Every page is this one, pointing at the same cursor again.
    var loops = false
    let status: Int32
    /// How many events reach the queue: a range where the replay stops with events published
    /// but not yet confirmed (the process ends; they may or may not have left).
    let delivered: ClosedRange<Int>
    var message: String? = nil
    /// Headers the replayed event must carry.
    var headers: AMQPTable? = nil

    var testDescription: String { name }

    static func event(position: String = "1", type: String = #""order.created""#, timestamp: String = #""2026-11-01T00:00:00Z""#, headers: String = "{}") -> String {
        #"{"position":\#(position),"id":"e-\#(position)","type":\#(type),"timestamp":\#(timestamp),"headers":\#(headers),"body":{"n":1}}"#
    }

    static func page(_ events: [String], next: String = "null") -> String {
        #"{"events":[\#(events.joined(separator: ","))],"next":\#(next)}"#
    }

    static let all: [HostilePage] = [
        HostilePage(name: "position beyond Int64", page: page([event(position: "99999999999999999999")]), status: 1, delivered: 0...0, message: "position that is not a whole number"),
        HostilePage(name: "position as a float", page: page([event(position: "1e3")]), status: 1, delivered: 0...0, message: "position that is not a whole number"),
        HostilePage(name: "position as a string", page: page([event(position: #""1""#)]), status: 1, delivered: 0...0, message: "position that is not a whole number"),
        HostilePage(name: "no type", page: #"{"events":[{"position":1,"id":"e","timestamp":"x","body":{}}],"next":null}"#, status: 1, delivered: 0...0, message: "without position, id, type"),
        HostilePage(name: "type not a string", page: page([event(type: "42")]), status: 1, delivered: 0...0, message: "not JSON"),
        HostilePage(name: "cut short", page: #"{"events":[{"position":1,"id":"#, status: 1, delivered: 0...0, message: "not JSON"),
        HostilePage(name: "timestamp in year 0", page: page([event(timestamp: #""0000-01-01T00:00:00Z""#)]), status: 0, delivered: 1...1),
        HostilePage(name: "timestamp in year 9999", page: page([event(timestamp: #""9999-12-31T23:59:59.999999Z""#)]), status: 0, delivered: 1...1),
        HostilePage(name: "timestamp that is no time", page: page([event(timestamp: #""NaN""#)]), status: 0, delivered: 1...1),
        HostilePage(name: "timestamp with 400 fraction digits", page: page([event(timestamp: "\"2026-11-01T00:00:00." + String(repeating: "9", count: 400) + "Z\"")]), status: 0, delivered: 1...1),
        HostilePage(name: "header numbers beyond every range", page: page([event(headers: #"{"x-inf":1e999,"x-big":18446744073709551616,"x-neg":-1e999,"x-nested":{"u":18446744073709551615,"i":-9223372036854775809}}"#)]), status: 0, delivered: 1...1,
            headers: [
                // Infinity has no place in an AMQP header RabbitMQ accepts: the JSON text travels.
                "x-inf": .string("1e999"), "x-neg": .string("-1e999"), "x-big": .double(18446744073709551616),
                "x-nested": .table(["u": .double(0x1p64), "i": .double(-0x1p63)]),
            ]),
        HostilePage(name: "a nested header number no Swift type holds", page: page([event(headers: #"{"x-nested":{"d":[1e400]}}"#)]), status: 1, delivered: 0...0, message: "number out of range"),
        HostilePage(name: "a type longer than an AMQP short string", page: page([event(type: "\"" + String(repeating: "t", count: 300) + "\"")]), status: 1, delivered: 0...0, message: "event #1 (id e-1) skipped: it cannot be published as the event store holds it: property type is 300 bytes"),
        HostilePage(name: "an id longer than an AMQP short string", page: page([event(), #"{"position":2,"id":"\#(String(repeating: "i", count: 256))","type":"order.created","timestamp":"2026-11-01T00:00:00Z","headers":{},"body":{}}"#]), status: 1, delivered: 1...1, message: "event #2"),
        HostilePage(name: "a header name longer than an AMQP short string", page: page([event(headers: "{\"" + String(repeating: "h", count: 256) + "\":1}")]), status: 1, delivered: 0...0, message: "event #1"),
        // One event that cannot be published as stored no longer stops the replay: the events
        // around it go out, it is named (position, id, why) and the replay exits 1 at the end.
        HostilePage(
            name: "properties larger than a frame between two good events",
            page: page([event(position: "1"), event(position: "2", headers: "{\"x-padding\":\"" + String(repeating: "p", count: 140_000) + "\"}"), event(position: "3")]),
            status: 1, delivered: 2...2, message: "event #2 (id e-2) skipped: it cannot be published as the event store holds it: the message properties take"),
        HostilePage(
            name: "a type over 255 bytes after a good event and before another",
            page: page([event(position: "1"), event(position: "2", type: "\"" + String(repeating: "t", count: 256) + "\""), event(position: "3")]),
            status: 1, delivered: 2...2, message: "1 event(s) were skipped"),
        HostilePage(name: "a cursor that leads back to itself", page: page([event()], next: #""7""#), loops: true, status: 1, delivered: 0...1, message: "a second time"),
    ]
}

@Suite("warren replay against a hostile event store", .timeLimit(.minutes(3)))
struct HostileEventStoreTests {
    @Test("whatever an events.query page holds, replay sends it or stops with a clear error, never a trap", arguments: HostilePage.all)
    func hostilePage(_ example: HostilePage) async throws {
        try await TestVhost.with { vhost, connection in
            var handlers = RPCHandlers()
            handlers.onRaw("events.query", EventsQuery.self) { query, _ in
                Data((query.after == nil || example.loops ? example.page : HostilePage.page([])).utf8)
            }
            let store = try await InProcessService("events", handlers: handlers, connection: connection)
            try await declareSubscriber("projection.events", keys: ["#"], on: connection)
            let result = try await WarrenCLI.run(["replay", "--to", "projection"], url: vhost.url)
            #expect(!result.signalled, "\(result)")
            #expect(result.status == example.status, "\(result)")
            if let message = example.message { #expect(result.stderr.contains(message), "\(result)") }
            #expect(example.delivered.contains(try await depth("projection.events", on: connection)))
            if let headers = example.headers {
                let delivered = try await drain("projection.events", on: connection, expecting: 1).first?.properties.headers ?? [:]
                for (name, value) in headers { #expect(delivered[name] == value, "\(name): \(String(describing: delivered[name]))") }
            }
            await store.stop()
        }
    }
}
