import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// One message a plain AMQP client may send to a service queue or to `warren.events`, and what
/// must become of it.
struct HostileMessage: Sendable, CustomTestStringConvertible {
    enum Fate: Sendable, Equatable {
        /// An answer arrives on `reply_to` (`ok` or an error reply).
        case replied
        /// An error reply arrives on `reply_to`: the request was not executed.
        case refused
        /// It ends in this dead-letter queue, with the reason in `x-error` or the broker's `x-death`.
        case parked(String)
        /// Nothing is promised but that it ends (acked, logged) and the service goes on.
        case survives
    }

    let name: String
    let exchange: String
    let routingKey: String
    let properties: AMQPProperties
    let body: Data
    let fate: Fate
    /// Sent with an `x-padding` header as long as the client lets the message be: a copy with
    /// one more header no longer fits in a frame.
    var fillsFrame = false
    var messageID: String { properties.messageID ?? "" }
    var testDescription: String { name }
}

/// Every kind of hostile input issue 13 names, for every service queue and for `warren.events`:
/// numbers out of range in every AMQP field type, bodies no operation accepts, strings with NUL
/// and control characters, headers that nearly fill a frame, deep nesting, replies nobody can
/// receive, events of types a service does not subscribe to.
enum HostileCatalog {
    /// A real operation of each service and a body it accepts.
    static let operations: [(queue: String, operation: String, body: String)] = [
        ("echo.rpc", "echo.echo", #"{"text":"hi"}"#),
        ("users.rpc", "users.get", #"{"id":"00000000-0000-4000-8000-000000000000"}"#),
        ("orders.rpc", "orders.get", #"{"id":"00000000-0000-4000-8000-000000000000"}"#),
        ("payments.rpc", "payments.get", #"{"orderId":"00000000-0000-4000-8000-000000000000"}"#),
        ("events.rpc", "events.query", #"{"limit":1}"#),
    ]

    /// Enough copies of a kind that a consumer which held each one unacked would run out of
    /// prefetch (64 for requests, 32 for events).
    static let wedgeCount = 70

    static func messages(replyTo: String) -> [HostileMessage] {
        var messages: [HostileMessage] = []
        func add(
            _ name: String, exchange: String = "", _ routingKey: String, _ body: Data, _ fate: HostileMessage.Fate, fillsFrame: Bool = false,
            _ edit: (inout AMQPProperties) -> Void
        ) {
            var properties = AMQPProperties(contentType: "application/json", messageID: "hostile-\(UUID().uuidString.lowercased())")
            properties.correlationID = properties.messageID
            edit(&properties)
            messages.append(
                HostileMessage(name: name, exchange: exchange, routingKey: routingKey, properties: properties, body: body, fate: fate, fillsFrame: fillsFrame))
        }

        for (queue, operation, valid) in operations {
            let body = Data(valid.utf8)
            for (name, value) in HostileValues.wireNumbers {
                add("\(queue): x-deadline \(name)", queue, body, .replied) {
                    $0.type = operation
                    $0.replyTo = replyTo
                    $0.headers = [WireHeader.deadline: value]
                }
            }
            for (name, bad) in HostileValues.bodies {
                add("\(queue): body \(name)", queue, bad, .replied) {
                    $0.type = operation
                    $0.replyTo = replyTo
                }
            }
            for (name, text) in HostileValues.strings {
                add("\(queue): type \(name)", queue, body, .replied) {
                    $0.type = text
                    $0.replyTo = replyTo
                }
                add("\(queue): every header and id \(name)", queue, body, .replied) {
                    $0.type = operation
                    $0.replyTo = replyTo
                    $0.messageID = text.isEmpty ? nil : text
                    $0.headers = [
                        WireHeader.correlationID: .string(text), WireHeader.causationID: .string(text),
                        WireHeader.traceparent: .string(text), WireHeader.aggregateID: .string(text), text.isEmpty ? "k" : text: .string(text),
                    ]
                }
                add("\(queue): reply_to \(name)", queue, body, .survives) {
                    $0.type = operation
                    $0.replyTo = text
                }
            }
            add("\(queue): x-correlation-id of 256 bytes", queue, body, .refused) {
                $0.type = operation
                $0.replyTo = replyTo
                $0.headers = [WireHeader.correlationID: .string(String(repeating: "c", count: 256))]
            }
            add("\(queue): an AMQP timestamp far in the future", queue, body, .replied) {
                $0.type = operation
                $0.replyTo = replyTo
                $0.timestamp = Date(timeIntervalSince1970: 1e15)
            }
            add("\(queue): headers nested 1,000 deep", queue, body, .replied) {
                $0.type = operation
                $0.replyTo = replyTo
                $0.headers = ["x-nested": HostileValues.nested(depth: 1_000)]
            }
            add("\(queue): near-frame headers on a real call", queue, body, .replied, fillsFrame: true) {
                $0.type = operation
                $0.replyTo = replyTo
            }
            for copy in 0..<wedgeCount {
                add("\(queue): near-frame fire-and-forget of an unknown type #\(copy)", queue, body, .parked("\(queue).dlq"), fillsFrame: true) {
                    $0.type = "no.such.operation"
                }
                add("\(queue): a reply nobody can receive #\(copy)", queue, body, .survives) {
                    $0.type = operation
                    $0.replyTo = "amq.gen-nobody-\(copy)"
                }
            }
        }

        // Commands whose events would carry a correlation id AMQP cannot: refused before they
        // reach the outbox, where the event could never be published.
        let commands = [
            ("users.rpc", "users.create", #"{"name":"Mallory","email":"mallory-\#(UUID().uuidString.prefix(8))@example.com","password":"correct horse battery"}"#),
            ("orders.rpc", "orders.create", #"{"userId":"00000000-0000-4000-8000-000000000000","items":[{"sku":"pen","quantity":1,"unitPriceCents":1}]}"#),
        ]
        for (queue, operation, body) in commands {
            add("\(queue): \(operation) with an x-correlation-id of 300 bytes", queue, Data(body.utf8), .refused) {
                $0.type = operation
                $0.replyTo = replyTo
                $0.headers = [WireHeader.correlationID: .string(String(repeating: "c", count: 300))]
            }
        }

        // Events: hostile retry counts on a type a service handles, near-frame headers on an
        // event whose handler fails, and types the target queue does not subscribe to.
        let unknownOrder = #"{"orderId":"00000000-0000-4000-8000-000000000000","reason":"declined"}"#
        for (name, value) in HostileValues.wireNumbers {
            // A payment for an order that does not exist can never be applied: parked at once.
            add("payment.failed with x-attempts \(name)", exchange: EventPublisher.exchange, "payment.failed", Data(unknownOrder.utf8), .parked("orders.events.dlq")) {
                $0.type = "payment.failed"
                $0.deliveryMode = .persistent
                $0.headers = [WireHeader.attempts: value, WireHeader.originalRoutingKey: "payment.failed"]
            }
        }
        for (name, bad) in HostileValues.bodies {
            add("order.created with body \(name)", exchange: EventPublisher.exchange, "order.created", bad, .parked("payments.events.dlq")) {
                $0.type = "order.created"
                $0.deliveryMode = .persistent
            }
        }
        for copy in 0..<wedgeCount {
            add(
                "order.created, near-frame headers, failing handler #\(copy)", exchange: EventPublisher.exchange, "order.created", Data("{}".utf8),
                .parked("payments.events.dlq"), fillsFrame: true
            ) {
                $0.type = "order.created"
            }
            add("order.confirmed straight into payments.events #\(copy)", "payments.events", Data(#"{"orderId":"00000000-0000-4000-8000-000000000001","userId":"u","totalCents":100}"#.utf8), .parked("payments.events.dlq")) {
                $0.type = "order.confirmed"
            }
        }
        return messages
    }
}

/// Publishes hostile messages as a plain AMQP client and keeps every reply that comes back.
final class HostileClient: Sendable {
    let channel: AMQPChannel
    /// For `basic.get` and inspection: a channel without consumers.
    let inspection: AMQPChannel
    let replyQueue: String
    private let replies = Mutex<[String: String]>([:])

    static func start(connection: AMQPConnection) async throws -> HostileClient {
        let channel = try await connection.openChannel()
        let queue = try await channel.declareQueue("", durable: false, exclusive: true, autoDelete: true).name
        let client = HostileClient(channel: channel, inspection: try await connection.openChannel(), replyQueue: queue)
        _ = try await channel.consume(queue: queue, noAck: true) { event in
            guard case .delivery(let delivery) = event, let id = delivery.properties.correlationID else { return }
            let status = delivery.properties.headers?[WireHeader.status]?.stringValue ?? "none"
            client.replies.withLock { $0[id] = status }
        }
        return client
    }

    private init(channel: AMQPChannel, inspection: AMQPChannel, replyQueue: String) {
        self.channel = channel
        self.inspection = inspection
        self.replyQueue = replyQueue
    }

    func send(_ message: HostileMessage) throws {
        guard message.fillsFrame else {
            try channel.send(message.body, exchange: message.exchange, routingKey: message.routingKey, properties: message.properties)
            return
        }
        // The longest padding the client accepts (it refuses a content header over a frame
        // before sending anything), found from above.
        var padding = 131_072
        while padding > 0 {
            var properties = message.properties
            properties.headers = (properties.headers ?? [:]).merging(HostileValues.nearFrameHeaders(bytes: padding)) { $1 }
            do {
                try channel.send(message.body, exchange: message.exchange, routingKey: message.routingKey, properties: properties)
                return
            } catch AMQPError.invalidArgument {
                padding -= 16
            }
        }
    }

    var replyCount: Int { replies.withLock { $0.count } }
    func replied(_ correlationID: String) -> Bool { replies.withLock { $0[correlationID] != nil } }
    /// The reply's `x-status` (`ok`, `error`), if a reply came.
    func status(_ correlationID: String) -> String? { replies.withLock { $0[correlationID] } }

    /// Waits until each of `messages` that must be answered has been, or `timeout` passes;
    /// returns those still unanswered.
    func awaitReplies(_ messages: [HostileMessage], within timeout: Duration) async throws -> [HostileMessage] {
        let expected = messages.filter { $0.fate == .replied || $0.fate == .refused }
        let deadline = ContinuousClock.now + timeout
        var missing = expected
        while ContinuousClock.now < deadline {
            missing = expected.filter { !replied($0.properties.correlationID ?? "") }
            if missing.isEmpty { return [] }
            try await Task.sleep(for: .milliseconds(100))
        }
        return missing
    }

    /// Takes every message from `queue` (a dead-letter queue) and returns them by message id,
    /// each with its reason (`x-error`, or the broker's `x-death` reason).
    func drain(_ queue: String) async throws -> [String: String] {
        var parked: [String: String] = [:]
        while let delivery = try await inspection.get(queue: queue, noAck: true) {
            let headers = delivery.properties.headers ?? [:]
            var reason = headers[WireHeader.error]?.stringValue
            if reason == nil, case .array(let deaths)? = headers["x-death"], case .table(let death)? = deaths.first {
                reason = death["reason"]?.stringValue
            }
            parked[delivery.properties.messageID ?? ""] = reason ?? ""
        }
        return parked
    }
}
