public import Foundation
import Glibc
import Hummingbird
public import Logging
import Metrics
import Prometheus
import UnixSignals
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

/// Runs a service process: logging and metrics from the environment, the broker connection,
/// the RPC responder, the event subscriber and a small HTTP port with `/health` and `/metrics`,
/// all in one `ServiceGroup`. SIGTERM or SIGINT stops taking messages, finishes those in hand
/// (bounded by the drain timeout) and closes cleanly.
///
/// Environment: `AMQP_URL` (one node, or several comma-separated: `host1:5672,host2:5672`),
/// `AMQP_QUEUE_TYPE` (`quorum`, or `classic`), `AMQP_DELIVERY_LIMIT` (20), `LOG_LEVEL` (info), `LOG_FORMAT` (`text` on a terminal, else
/// `json`), `HTTP_PORT` (the service's default), `RPC_PREFETCH` (64), `RPC_CONCURRENCY` (64),
/// `DRAIN_TIMEOUT_SECONDS` (10), `HEALTH_STALL_SECONDS` (120: deliveries held this long with
/// no handler finishing make `/health` report the consumer as stalled).
public enum ServiceHost {
    public static func run(
        name: String, defaultHTTPPort: Int,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        setup: @Sendable (ServiceResources) async throws -> ServiceDefinition
    ) async throws {
        let tracing = Observability.tracingRequested(environment)
        bootstrapLogging(environment, metadataProvider: tracing ? Observability.logMetadataProvider : nil)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Observability.metricsFactory(registry: registry))
        Observability.recordBuildInfo(service: name, environment: environment)
        var logger = Logger(label: name)
        logger[metadataKey: "service"] = "\(name)"
        let tracer: (any Service)?
        do {
            tracer = try Observability.bootstrapTracing(serviceName: name, environment: environment)
        } catch {
            logger.critical("cannot start: the OTEL_* settings are not usable: \(error)")
            exit(1)
        }

        let drain: Duration, prefetch: Int, concurrency: Int, port: Int, stallAfter: Duration, queueType: DurableQueueType
        do {
            queueType = try DurableQueueType.from(environment: environment)
            // Bounded: a drain of 2^63 s would trap when added to the clock at shutdown.
            drain = .seconds(try number(environment, "DRAIN_TIMEOUT_SECONDS", 0...86_400) ?? 10)
            prefetch = try number(environment, "RPC_PREFETCH", 1...65_535) ?? 64
            concurrency = try number(environment, "RPC_CONCURRENCY", 1...10_000) ?? 64
            port = try number(environment, "HTTP_PORT", 0...65_535) ?? defaultHTTPPort
            stallAfter = .seconds(try number(environment, "HEALTH_STALL_SECONDS", 1...86_400) ?? 120)
        } catch {
            logger.critical("cannot start: \(error.message)")
            exit(1)
        }

        let url = environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"
        // Whatever stops the start, one line an operator can act on and exit status 1, rather
        // than a crash trace.
        var configuration: AMQPConfiguration
        do {
            configuration = try AMQPConfiguration(url: url)
        } catch {
            logger.critical("AMQP_URL is not usable: \(error)")
            exit(1)
        }
        configuration.connectionName = "\(name)@\(ProcessInfo.processInfo.hostName):\(getpid())"
        let connection: AMQPConnection
        do {
            connection = try await AMQPConnection.connect(configuration, logger: logger)
        } catch {
            logger.critical("cannot reach the message broker at \(redacted(url)): \(error). Is it running? `make run` starts one.")
            exit(1)
        }
        let rpc: RPCClient
        let events: EventPublisher
        let definition: ServiceDefinition
        do {
            rpc = try await RPCClient.start(connection: connection, logger: logger)
            events = try await EventPublisher.start(connection: connection, appID: name)
            let resources = ServiceResources(
                connection: connection, rpc: rpc, events: events, logger: logger, environment: environment, queueType: queueType)
            definition = try await setup(resources)
        } catch {
            logger.critical("cannot start: \(error)")
            exit(1)
        }

        let responder = RPCResponder(
            service: name, connection: connection, handlers: definition.handlers,
            configuration: .init(
                prefetch: UInt16(clamping: prefetch), concurrency: concurrency, drainTimeout: drain, queueType: queueType),
            rpc: rpc, inbox: definition.inbox, logger: logger)
        var services: [any Service] = [connection]
        // The exporter first: it starts before and, the group ending in reverse, stops after
        // the work whose spans it sends.
        if let tracer { services.insert(tracer, at: 0) }
        services += definition.services
        services.append(responder)
        if var subscription = definition.subscription {
            subscription.configuration.queueType = queueType
            services.append(
                EventSubscriber(
                    service: name, connection: connection, patterns: subscription.patterns, configuration: subscription.configuration,
                    processed: subscription.processed, logger: logger, handler: subscription.handler))
        }
        services.append(
            adminServer(name: name, port: port, connection: connection, registry: registry, stallAfter: stallAfter, logger: logger))

        logger.info("ready", metadata: ["queue": "\(QueueName.rpc(name))", "http_port": "\(port)", "broker": "\(redacted(url))"])
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            // One line an operator can act on, rather than a crash trace.
            logger.critical("stopped on an error: \(error) (HTTP_PORT \(port) taken? broker gone?)")
            exit(1)
        }
        await rpc.close()
        logger.info("stopped")
    }

    /// `/health`: broker connectivity and each consumer's state (ConsumerHealth); 503 while the
    /// broker is disconnected or any consumer is not taking messages (starting, restarting,
    /// stopped, or stalled for `stallAfter`). `/metrics`: Prometheus text.
    static func adminServer(
        name: String, port: Int, connection: AMQPConnection, registry: PrometheusCollectorRegistry, stallAfter: Duration,
        health: ConsumerHealth = .process, logger: Logger
    ) -> some Service {
        let router = Router()
        router.get("health") { _, _ -> Response in
            let (healthy, body) = healthReport(
                name: name, connected: connection.isConnected, consumers: health.statuses(), stallAfter: stallAfter)
            return Response(
                status: healthy ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: Observability.scrape(registry: registry, connection: connection))))
        }
        return Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: name), logger: logger)
    }

    /// The `/health` body: `{"service","status":"ok|degraded","broker":"connected|disconnected",
    /// "consumers":[{"queue","state","inFlight","heldSeconds","detail"?}],"problems":[…]}`.
    static func healthReport(name: String, connected: Bool, consumers: [ConsumerHealth.Status], stallAfter: Duration) -> (healthy: Bool, body: String) {
        var problems: [String] = connected ? [] : ["the broker is disconnected"]
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

    private static func jsonString(_ text: String) -> String {
        (try? WireJSON.encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? #""""#
    }

    /// An integer setting within `range`; anything else is logged and the default is used.
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

    /// Text on a terminal, JSON lines elsewhere (or as `LOG_FORMAT` says). A bad `LOG_LEVEL` or
    /// `LOG_FORMAT` stops the process (exit 1) with one line on stderr, before anything starts.
    /// `metadataProvider` adds to every line (`trace_id`, `span_id` when tracing).
    public static func bootstrapLogging(_ environment: [String: String], metadataProvider: Logger.MetadataProvider? = nil) {
        let settings: (level: Logger.Level, json: Bool?)
        do {
            settings = try logSettings(environment)
        } catch {
            FileHandle.standardError.write(Data("cannot start: \(error.message)\n".utf8))
            exit(1)
        }
        let level = settings.level
        let json = settings.json ?? (isatty(STDOUT_FILENO) == 0)
        LoggingSystem.bootstrap(
            { label, provider in
                var handler: any LogHandler =
                    json
                    ? JSONLogHandler(label: label, metadataProvider: provider)
                    : StreamLogHandler.standardOutput(label: label, metadataProvider: provider)
                handler.logLevel = level
                return handler
            }, metadataProvider: metadataProvider)
    }

    /// The URL without its password, for logs.
    static func redacted(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://"),
            let colon = url[scheme.upperBound..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }
}
