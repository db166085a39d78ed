public import Foundation
import Glibc
import Hummingbird
public import Logging
import Metrics
import Prometheus
import UnixSignals
public import ServiceLifecycle
public import WarrenAMQP

/// What a service's set-up gets from the host: the broker connection, an RPC client for
/// calling other services, an event publisher, and a logger.
public struct ServiceResources: Sendable {
    public let connection: AMQPConnection
    public let rpc: RPCClient
    public let events: EventPublisher
    public let logger: Logger
    public let environment: [String: String]
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
/// Environment: `AMQP_URL`, `LOG_LEVEL` (info), `LOG_FORMAT` (`text` on a terminal, else
/// `json`), `HTTP_PORT` (the service's default), `RPC_PREFETCH` (64), `RPC_CONCURRENCY` (64),
/// `DRAIN_TIMEOUT_SECONDS` (10).
public enum ServiceHost {
    public static func run(
        name: String, defaultHTTPPort: Int,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        setup: @Sendable (ServiceResources) async throws -> ServiceDefinition
    ) async throws {
        bootstrapLogging(environment)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var logger = Logger(label: name)
        logger[metadataKey: "service"] = "\(name)"

        let url = environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"
        let connection: AMQPConnection
        do {
            var configuration = try AMQPConfiguration(url: url)
            configuration.connectionName = "\(name)@\(ProcessInfo.processInfo.hostName):\(getpid())"
            connection = try await AMQPConnection.connect(configuration, logger: logger)
        } catch {
            logger.critical("cannot reach the message broker at \(redacted(url)): \(error). Is it running? `make run` starts one.")
            throw error
        }
        let rpc = try await RPCClient.start(connection: connection, logger: logger)
        let events = try await EventPublisher.start(connection: connection, appID: name)
        let resources = ServiceResources(connection: connection, rpc: rpc, events: events, logger: logger, environment: environment)
        let definition = try await setup(resources)

        let drain = Duration.seconds(Int(environment["DRAIN_TIMEOUT_SECONDS"] ?? "") ?? 10)
        let responder = RPCResponder(
            service: name, connection: connection, handlers: definition.handlers,
            configuration: .init(
                prefetch: UInt16(environment["RPC_PREFETCH"] ?? "") ?? 64,
                concurrency: Int(environment["RPC_CONCURRENCY"] ?? "") ?? 64, drainTimeout: drain),
            rpc: rpc, inbox: definition.inbox, logger: logger)
        var services: [any Service] = [connection]
        services += definition.services
        services.append(responder)
        if let subscription = definition.subscription {
            services.append(
                EventSubscriber(
                    service: name, connection: connection, patterns: subscription.patterns, configuration: subscription.configuration,
                    processed: subscription.processed, logger: logger, handler: subscription.handler))
        }
        let port = Int(environment["HTTP_PORT"] ?? "") ?? defaultHTTPPort
        services.append(adminServer(name: name, port: port, connection: connection, registry: registry, logger: logger))

        logger.info("ready", metadata: ["queue": "\(name).rpc", "http_port": "\(port)", "broker": "\(redacted(url))"])
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

    /// `/health` (broker connectivity, 503 while disconnected) and `/metrics` (Prometheus text).
    static func adminServer(name: String, port: Int, connection: AMQPConnection, registry: PrometheusCollectorRegistry, logger: Logger) -> some Service {
        let router = Router()
        router.get("health") { _, _ -> Response in
            let connected = connection.isConnected
            let body = #"{"service":"\#(name)","status":"\#(connected ? "ok" : "degraded")","broker":"\#(connected ? "connected" : "disconnected")"}"#
            return Response(
                status: connected ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        return Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: name), logger: logger)
    }

    /// Text on a terminal, JSON lines elsewhere (or as `LOG_FORMAT` says).
    public static func bootstrapLogging(_ environment: [String: String]) {
        let level = environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        let json = environment["LOG_FORMAT"].map { $0 == "json" } ?? (isatty(STDOUT_FILENO) == 0)
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = json ? JSONLogHandler(label: label) : StreamLogHandler.standardOutput(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// The URL without its password, for logs.
    static func redacted(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let scheme = url.range(of: "://"),
            let colon = url[scheme.upperBound..<at].firstIndex(of: ":")
        else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }
}
