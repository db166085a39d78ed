import Foundation
public import Logging
public import ServiceLifecycle
public import WarrenAMQP
import WarrenContract

/// What a service's set-up gets from the host: the broker connection, an RPC client for
/// calling other services, an event publisher, and a logger.
public struct ServiceResources: Sendable {
    public let connection: AMQPConnection
    public let rpc: RPCClient
    public let events: EventPublisher
    public let logger: Logger
    public let environment: [String: String]
    /// The type of the service's durable queues, from `AMQP_QUEUE_TYPE` and `AMQP_DELIVERY_LIMIT`.
    public let queueType: DurableQueueType

    public init(
        connection: AMQPConnection, rpc: RPCClient, events: EventPublisher, logger: Logger, environment: [String: String],
        queueType: DurableQueueType
    ) {
        self.connection = connection
        self.rpc = rpc
        self.events = events
        self.logger = logger
        self.environment = environment
        self.queueType = queueType
    }
}

/// A subscription of a service to events.
public struct Subscription: Sendable {
    public var patterns: [String]
    public var configuration: EventSubscriber.Configuration
    public var processed: (any ProcessedMessages)?
    public var handler: EventSubscriber.Handler

    public init(
        _ patterns: [String], configuration: EventSubscriber.Configuration = .init(), processed: (any ProcessedMessages)? = nil,
        handler: @escaping EventSubscriber.Handler
    ) {
        self.patterns = patterns
        self.configuration = configuration
        self.processed = processed
        self.handler = handler
    }
}

/// A service, declared once: its operations, its subscriptions, and any long-running work of
/// its own (e.g. an outbox relay).
public struct ServiceDefinition: Sendable {
    public var handlers: RPCHandlers
    public var subscription: Subscription?
    public var services: [any Service]
    /// Where the replies of `onCommand` operations are kept, so that a redelivered command is
    /// answered, not executed again.
    public var inbox: (any CommandInbox)?

    public init(handlers: RPCHandlers, subscription: Subscription? = nil, services: [any Service] = [], inbox: (any CommandInbox)? = nil) {
        self.handlers = handlers
        self.subscription = subscription
        self.services = services
        self.inbox = inbox
    }
}

/// What every service process shares, whatever runs it: its environment settings, its
/// `/health` report. `ServiceHost.run` (WarrenHost) runs a service with them.
public enum ServiceHost {
    /// The `/health` body: `{"service","status":"ok|degraded","broker":"connected|disconnected",
    /// "consumers":[{"queue","state","inFlight","heldSeconds","detail"?}],"problems":[…]}`.
    public static func healthReport(
        name: String, connected: Bool, consumers: [ConsumerHealth.Status], stallAfter: Duration, ioThreadHeld: Duration? = nil
    ) -> (healthy: Bool, body: String) {
        var problems: [String] = connected ? [] : ["the broker is disconnected"]
        if let held = ioThreadHeld, held > ioThreadHeldLimit {
            problems.append(
                "handlers have held the broker connection's thread for \(held.components.seconds) s (one blocks it?); the broker drops the connection when its heartbeats stop")
        }
        var items: [String] = []
        for consumer in consumers {
            let stalled = consumer.state == .consuming && consumer.heldFor > stallAfter
            let state = stalled ? "stalled" : consumer.state.rawValue
            if consumer.state != .consuming || stalled {
                problems.append("\(consumer.queue): \(state)" + (consumer.detail.map { " (\($0))" } ?? ""))
            }
            var item = #"{"queue":\#(jsonString(consumer.queue)),"state":"\#(state)","inFlight":\#(consumer.inFlight),"heldSeconds":\#(consumer.heldFor.components.seconds)"#
            if let detail = consumer.detail { item += #","detail":\#(jsonString(detail))"# }
            items.append(item + "}")
        }
        let healthy = problems.isEmpty
        let body = #"{"service":\#(jsonString(name)),"status":"\#(healthy ? "ok" : "degraded")","broker":"\#(connected ? "connected" : "disconnected")","#
            + #""consumers":[\#(items.joined(separator: ","))],"problems":[\#(problems.map(jsonString).joined(separator: ","))]}"#
        return (healthy, body)
    }

    /// How long handlers may hold the broker connection's thread before `/health` says so:
    /// far above any request's own work, well under the broker's heartbeat timeout.
    public static let ioThreadHeldLimit = Duration.seconds(2)

    private static func jsonString(_ text: String) -> String {
        (try? WireJSON.encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? #""""#
    }

    /// An integer setting from the environment: nil when unset or empty; `invalid` naming it
    /// when it is not a whole number in `range` (a mistyped setting stops the start rather than
    /// run on a default the operator did not choose).
    public static func number(_ environment: [String: String], _ name: String, _ range: ClosedRange<Int>) throws(ServiceError) -> Int? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw .invalid("\(name)='\(text)' is not an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// `LOG_LEVEL` and `LOG_FORMAT` (any letter case): the level (info when unset) and whether
    /// JSON lines (nil when unset: the caller decides). A value that is neither is an error, so
    /// that `LOG_LEVEL=verbose` stops the start instead of silently logging at info.
    public static func logSettings(_ environment: [String: String]) throws(ServiceError) -> (level: Logger.Level, json: Bool?) {
        func word(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
            return text.lowercased()
        }
        var level = Logger.Level.info
        if let text = word("LOG_LEVEL") {
            guard let parsed = Logger.Level(rawValue: text) else {
                throw .invalid("LOG_LEVEL='\(environment["LOG_LEVEL"] ?? "")' is not a level: use trace, debug, info, notice, warning, error or critical")
            }
            level = parsed
        }
        var json: Bool?
        if let text = word("LOG_FORMAT") {
            guard text == "json" || text == "text" else {
                throw .invalid("LOG_FORMAT='\(environment["LOG_FORMAT"] ?? "")' is not a format: use json or text")
            }
            json = text == "json"
        }
        return (level, json)
    }

    /// The URL without its password, for logs.
    public static func redacted(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://"),
            let colon = url[scheme.upperBound..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }
}
