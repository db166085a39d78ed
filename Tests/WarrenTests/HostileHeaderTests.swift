import Foundation
import Logging
import PropertyBased
import Testing
@testable import Warren
@testable import WarrenAMQP

/// What a number header may hold when any client sends it, and how Warren reads it.
enum Reading: Sendable, Equatable {
    case absent
    /// Before now: a request carrying it is answered `timeout` without running.
    case expired
    /// The end of year 9999: no hurry.
    case latest
    case exactly(Date)
}

private func delivery(headers: AMQPTable, exchange: String = "", routingKey: String = "x.rpc", type: String? = nil) -> AMQPDelivery {
    AMQPDelivery(
        body: Data("{}".utf8), properties: AMQPProperties(headers: headers, type: type), exchange: exchange, routingKey: routingKey,
        deliveryTag: 1, redelivered: false, consumerTag: nil, acknowledger: nil)
}

@Suite("Hostile numbers and types in headers")
struct HostileHeaderTests {
    /// Every AMQP field type as `x-deadline`, with the extremes of each.
    static let deadlines: [(AMQPFieldValue, Reading)] = [
        (.double(1e300), .latest), (.double(-1e300), .expired), (.double(.nan), .absent), (.double(.infinity), .latest),
        (.double(-.infinity), .expired), (.double(1_800_000_000_000), .exactly(Date(timeIntervalSince1970: 1_800_000_000))),
        (.int(-1), .expired), (.int(Int64.max), .latest), (.int(Int64.min), .expired), (.int(0), .expired),
        (.int(1_800_000_000_000), .exactly(Date(timeIntervalSince1970: 1_800_000_000))),
        (.string("1e300"), .absent), (.string("NaN"), .absent), (.string("-1"), .expired), (.string("99999999999999999999"), .latest),
        (.string("1800000000000"), .exactly(Date(timeIntervalSince1970: 1_800_000_000))),
        (.bool(true), .absent), (.table(["x-deadline": .int(1)]), .absent), (.array([.int(1)]), .absent), (.bytes(Data([1, 2])), .absent),
        (.timestamp(Date(timeIntervalSince1970: 1.8e19)), .absent), (.decimal(scale: 255, value: .max), .absent), (.void, .absent),
    ]

    @Test("x-deadline of every type and extreme is read as a deadline, expired, the latest one or absent; never a trap", arguments: deadlines)
    func deadlineRead(value: AMQPFieldValue, expected: Reading) {
        let envelope = Envelope(delivery: delivery(headers: [WireHeader.deadline: value]))
        let reading: Reading
        switch envelope.deadline {
        case nil: reading = .absent
        case let date? where date.timeIntervalSince1970 == 0: reading = .expired
        case let date? where date.timeIntervalSince1970 * 1000 == Double(Envelope.latestDeadlineMilliseconds): reading = .latest
        case let date?: reading = .exactly(date)
        }
        if expected == .expired {
            #expect(envelope.deadline.map { $0 < Date() } == true)
        } else {
            #expect(reading == expected)
        }
        // Passed on to the next call, and written back: in range, without trapping.
        let headers = envelope.caused(type: "next.call").properties().headers ?? [:]
        if envelope.deadline != nil {
            #expect(headers[WireHeader.deadline]?.intValue.map { (0...Envelope.latestDeadlineMilliseconds).contains($0) } == true)
        }
    }

    /// Every AMQP field type as `x-attempts`: the attempt this delivery is.
    static let attempts: [(AMQPFieldValue?, Int)] = [
        (nil, 1), (.int(0), 1), (.int(2), 3), (.int(Int64.max), .max), (.int(Int64.min), 1), (.int(-1), 1),
        (.double(1e300), .max), (.double(.nan), 1), (.double(.infinity), .max), (.double(-.infinity), 1), (.double(2), 3),
        (.string("2"), 3), (.string("1e300"), 1), (.string("NaN"), 1), (.string("9223372036854775808"), .max),
        (.bool(true), 1), (.table(["n": 5]), 1), (.array([5]), 1), (.bytes(Data([5])), 1), (.timestamp(Date()), 1),
        (.decimal(scale: 0, value: 5), 1), (.void, 1),
    ]

    @Test("x-attempts of every type and extreme gives an attempt number from 1 to Int.max; never a trap", arguments: attempts)
    func attemptRead(value: AMQPFieldValue?, expected: Int) {
        let headers: AMQPTable = value.map { [WireHeader.attempts: $0] } ?? [:]
        let attempt = EventSubscriber.attempt(from: headers)
        #expect(attempt == expected)
        // The copy for the retry or dead-letter queue carries it back out.
        let copy = AMQPProperties(headers: headers).deadLettered(error: "boom", originalRoutingKey: "a.b", attempts: attempt)
        #expect(copy.headers?[WireHeader.attempts] == .int(Int64(attempt)))
    }

    @Test("any double, integer or digits as x-deadline or x-attempts: no trap, results in range")
    func anyNumber() async {
        await propertyCheck(count: 3_000, input: Gen<UInt64>.value(), Gen<UInt8>.value(in: 0...2)) { bits, pick in
            let value: AMQPFieldValue =
                switch pick {
                case 0: .double(Double(bitPattern: bits))
                case 1: .int(Int64(bitPattern: bits))
                default: .string(String(Int64(bitPattern: bits)))
                }
            let envelope = Envelope(delivery: delivery(headers: [WireHeader.deadline: value, WireHeader.attempts: value]))
            if let deadline = envelope.deadline {
                #expect(deadline.timeIntervalSince1970 >= 0)
                #expect(deadline.timeIntervalSince1970 * 1000 <= Double(Envelope.latestDeadlineMilliseconds))
            }
            _ = envelope.properties()
            #expect(EventSubscriber.attempt(from: [WireHeader.attempts: value]) >= 1)
        }
    }

    /// Which type an event is when the routing key, `x-original-routing-key` and AMQP `type` disagree.
    static let types: [(exchange: String, routingKey: String, original: String?, type: String?, expected: String?)] = [
        // Through warren.events: the routing key the bindings matched, whatever else it says.
        ("warren.events", "order.created", nil, nil, "order.created"),
        ("warren.events", "order.created", nil, "order.cancelled", "order.created"),
        ("warren.events", "order.created", "order.cancelled", "order.cancelled", "order.created"),
        // Straight into the queue (retry, replay --to, dlq requeue, anyone): the header, else the type.
        ("", "payments.events", "order.created", "order.cancelled", "order.created"),
        ("", "payments.events", nil, "order.cancelled", "order.cancelled"),
        ("", "payments.events", nil, nil, nil),
        ("other.exchange", "order.created", nil, "order.refunded", "order.refunded"),
    ]

    @Test("an event's type: the routing key through warren.events, else x-original-routing-key, else the AMQP type",
          arguments: types.indices)
    func eventTypeDecided(index: Int) {
        let row = Self.types[index]
        var headers: AMQPTable = [:]
        if let original = row.original { headers[WireHeader.originalRoutingKey] = .string(original) }
        let type = EventSubscriber.eventType(of: delivery(headers: headers, exchange: row.exchange, routingKey: row.routingKey, type: row.type))
        #expect(type == row.expected)
    }

    @Test("a non-string x-original-routing-key is no type", arguments: [AMQPFieldValue.int(1), .bool(true), .void, .table([:])])
    func nonStringOriginal(value: AMQPFieldValue) {
        let type = EventSubscriber.eventType(of: delivery(headers: [WireHeader.originalRoutingKey: value], type: "order.created"))
        #expect(type == "order.created")
    }

    static let topics: [(pattern: String, key: String, matches: Bool)] = [
        ("order.created", "order.created", true), ("order.created", "order.cancelled", false),
        ("order.*", "order.created", true), ("order.*", "order", false), ("order.*", "order.a.b", false),
        ("order.#", "order", true), ("order.#", "order.a.b", true), ("#", "", true), ("#", "a.b.c", true),
        ("*.created", "order.created", true), ("*.created", "created", false), ("#.created", "a.b.created", true),
        ("a.#.z", "a.z", true), ("a.#.z", "a.b.c.z", true), ("a.#.z", "a.b.c", false), ("*", "", false), ("", "", true), ("", "a", false), ("*", "a.b", false),
        ("payment.succeeded", "payment.succeeded.extra", false), ("#.#.#.#.#.#.#.#.x", String(repeating: "a.", count: 200) + "y", false),
        ("order.created", "payments.events", false),
    ]

    @Test("topic patterns match as the broker matches them (* one word, # zero or more)", arguments: topics.indices)
    func topicMatching(index: Int) {
        let row = Self.topics[index]
        #expect(TopicPattern.matches(row.pattern, row.key) == row.matches, "\(row.pattern) vs \(row.key)")
    }

    @Test("topic matching agrees with the plain recursive definition on random patterns and keys")
    func topicMatchingProperty() async {
        /// The definition, word by word: exponential in `#`s, fine for five words.
        func reference(_ pattern: ArraySlice<String>, _ key: ArraySlice<String>) -> Bool {
            guard let word = pattern.first else { return key.isEmpty }
            if word == "#" { return reference(pattern.dropFirst(), key) || (!key.isEmpty && reference(pattern, key.dropFirst())) }
            guard let first = key.first, word == "*" || word == first else { return false }
            return reference(pattern.dropFirst(), key.dropFirst())
        }
        let patternWords = Gen<String?>.element(of: ["a", "b", "*", "#"]).map { $0 ?? "a" }.array(of: 0...5)
        let keyWords = Gen<String?>.element(of: ["a", "b"]).map { $0 ?? "a" }.array(of: 0...5)
        await propertyCheck(count: 3_000, input: patternWords, keyWords) { pattern, key in
            let expected = reference(pattern[...], key[...])
            #expect(TopicPattern.matches(pattern.joined(separator: "."), key.joined(separator: ".")) == expected, "\(pattern) \(key)")
        }
    }

    @Test("x-error is cut to 1 KiB, on a character boundary")
    func errorShortened() {
        let long = String(repeating: "é", count: 5_000)
        let copy = AMQPProperties().deadLettered(error: long, originalRoutingKey: "a", attempts: 1)
        let error = copy.headers?[WireHeader.error]?.stringValue ?? ""
        #expect(error.utf8.count <= AMQPProperties.maxErrorLength)
        #expect(error.hasSuffix("…"))
        #expect(AMQPProperties().deadLettered(error: "short", originalRoutingKey: "a").headers?[WireHeader.error] == "short")
    }

    @Test("durations in milliseconds saturate instead of overflowing", arguments: [
        (Duration.seconds(Int64.max), Int64.max), (.seconds(Int64.min), Int64.min), (.milliseconds(1500), 1500), (.zero, 0),
    ])
    func wholeMilliseconds(duration: Duration, expected: Int64) {
        #expect(duration.wholeMilliseconds == expected)
    }
}

/// A request with integer fields, as the services' requests have (limit, quantity, cents).
private struct Numbers: Decodable {
    struct Item: Decodable { var quantity: Int }
    var limit: Int?
    var items: [Item]?
}

@Suite("JSON numbers in requests and events")
struct JSONNumberTests {
    @Test("a number no 64-bit integer holds is an invalid reply naming the field, never a trap", arguments: [
        (#"{"limit":1e300}"#, "limit"), (#"{"limit":9223372036854775808}"#, "limit"), (#"{"limit":1.5}"#, "limit"),
        (#"{"limit":-9223372036854775809}"#, "limit"), (#"{"items":[{"quantity":1e19}]}"#, "items[0].quantity"),
        (#"{"items":[{"quantity":2.5e-300}]}"#, "items[0].quantity"), (#"{"limit":"7"}"#, "limit"), (#"{"limit":true}"#, "limit"),
    ])
    func misfit(body: String, field: String) {
        do {
            _ = try WireJSON.decode(Numbers.self, from: Data(body.utf8))
            Issue.record("\(body) was accepted")
        } catch {
            #expect(error.code == .invalid)
            #expect(error.message.contains("'\(field)'"), "\(body): \(error.message)")
        }
    }

    @Test("whole numbers within 64 bits decode, also written with an exponent or .0", arguments: [
        (#"{"limit":9223372036854775807}"#, Int.max), (#"{"limit":-9223372036854775808}"#, Int.min), (#"{"limit":1e2}"#, 100), (#"{"limit":7.0}"#, 7),
    ])
    func fits(body: String, expected: Int) throws {
        #expect(try WireJSON.decode(Numbers.self, from: Data(body.utf8)).limit == expected)
    }
}

@Suite("Service settings from the environment")
struct EnvironmentNumberTests {
    @Test("an integer setting outside its range, or not an integer, is an error naming it (the start stops), never a trap later", arguments: [
        "9223372036854775807", "99999999999999999999", "-1", "1e3", "nan", "86401", " 5",
    ])
    func drainTimeoutRefused(text: String) {
        let error = #expect(throws: ServiceError.self) { try ServiceHost.number(["DRAIN_TIMEOUT_SECONDS": text], "DRAIN_TIMEOUT_SECONDS", 0...86_400) }
        #expect(error?.message.contains("DRAIN_TIMEOUT_SECONDS") == true)
    }

    @Test("an integer setting in range is read; unset or empty is the default", arguments: [("86400", Int?.some(86_400)), ("0", 0), ("", nil)])
    func drainTimeout(text: String, expected: Int?) throws {
        #expect(try ServiceHost.number(["DRAIN_TIMEOUT_SECONDS": text], "DRAIN_TIMEOUT_SECONDS", 0...86_400) == expected)
    }
}

@Suite("Consumer health")
struct ConsumerHealthTests {
    @Test("a consumer is healthy while consuming, stalled when it holds deliveries and none finishes, unhealthy when not consuming")
    func states() throws {
        let health = ConsumerHealth()
        let tracker = health.track(queue: "t.events")
        let stall = Duration.seconds(60)
        func report(at offset: Duration = .zero) -> (Bool, String) {
            ServiceHost.healthReport(name: "t", connected: true, consumers: health.statuses(now: .now + offset), stallAfter: stall)
        }
        #expect(report().0 == false)  // starting
        #expect(report().1.contains(#""state":"starting""#))
        tracker.consuming()
        #expect(report().0 == true)
        #expect(report(at: .seconds(3600)).0 == true)  // idle for an hour is fine
        tracker.received(2)
        #expect(report(at: .seconds(10)).0 == true)
        let (healthy, body) = report(at: .seconds(61))
        #expect(!healthy)
        #expect(body.contains(#""state":"stalled""#))
        #expect(body.contains(#""inFlight":2"#))
        tracker.finished()
        #expect(report(at: .seconds(30)).0 == true)  // one finished: progress
        tracker.restarting("queue deleted")
        #expect(report().1.contains(#""state":"restarting""#))
        tracker.stopped("boom \"quoted\"")
        let stopped = report()
        #expect(!stopped.0)
        let json = try JSONSerialization.jsonObject(with: Data(stopped.1.utf8)) as? [String: Any]
        #expect(json?["status"] as? String == "degraded")
        #expect((json?["problems"] as? [String])?.first?.contains("boom \"quoted\"") == true)
        tracker.remove()
        #expect(report().0 == true)
        #expect(ServiceHost.healthReport(name: "t", connected: false, consumers: [], stallAfter: stall).healthy == false)
        // Handlers holding the broker connection's thread: degraded past the limit, not below it.
        let held = ServiceHost.healthReport(name: "t", connected: true, consumers: [], stallAfter: stall, ioThreadHeld: .seconds(3))
        #expect(!held.healthy && held.body.contains("held the broker connection's thread for 3 s"))
        #expect(ServiceHost.healthReport(name: "t", connected: true, consumers: [], stallAfter: stall, ioThreadHeld: .milliseconds(50)).healthy)
    }
}
