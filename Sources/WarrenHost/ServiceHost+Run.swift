public import Foundation
import Glibc
public import Logging
public import Prometheus
public import ServiceLifecycle
import UnixSignals
public import Warren
import WarrenAMQP
import WarrenContract

extension ServiceHost {
    /// Why a service did not start or stopped on an error; already logged (critical) with what
    /// to do, so `main` only exits with status 1.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs a service: the broker connection, the RPC client, the RPC responder, the event
    /// subscriber and a small HTTP port with `/health` and `/metrics` (rendering `registry`),
    /// all in one `ServiceGroup`. SIGTERM or SIGINT stops taking messages, finishes those in
    /// hand (bounded by the drain timeout) and closes cleanly. It bootstraps nothing and never
    /// exits: `ServiceProcess.run`, called from `main`, bootstraps logging, metrics and
    /// `tracer`; a failure is logged on `logger` and thrown as `Failure`.
    ///
    /// Environment: `AMQP_URL` (one node, or several comma-separated: `host1:5672,host2:5672`),
    /// `AMQP_QUEUE_TYPE` (`quorum`, or `classic`), `AMQP_DELIVERY_LIMIT` (20), `LOG_LEVEL` (info), `LOG_FORMAT` (`text` on a terminal, else
    /// `json`), `HTTP_PORT` (the service's default), `RPC_PREFETCH` (64), `RPC_CONCURRENCY` (64),
    /// `DRAIN_TIMEOUT_SECONDS` (10), `HANDLER_EXECUTOR` (`io-thread`, or `pool`: where the
    /// responder's and the subscriber's handlers run, `HandlerExecutor`), `HEALTH_STALL_SECONDS` (120: deliveries held this long with
    /// no handler finishing make `/health` report the consumer as stalled).
    public static func run(
        name: String, defaultHTTPPort: Int,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), tracer: (any Service)? = nil, logger: Logger,
        setup: @Sendable (ServiceResources) async throws -> ServiceDefinition
    ) async throws(Failure) {
        Observability.recordBuildInfo(service: name, environment: environment)
        var logger = logger
        logger[metadataKey: "service"] = "\(name)"
        func fail(_ message: String) -> Failure {
            logger.critical("\(message)")
            return Failure(description: message)
        }

        let drain: Duration, prefetch: Int, concurrency: Int, port: Int, stallAfter: Duration, queueType: DurableQueueType
        let executor: HandlerExecutor
        do {
            queueType = try DurableQueueType.from(environment: environment)
            executor = try HandlerExecutor.from(environment: environment)
            // Bounded: a drain of 2^63 s would trap when added to the clock at shutdown.
            drain = .seconds(try number(environment, "DRAIN_TIMEOUT_SECONDS", 0...86_400) ?? 10)
            prefetch = try number(environment, "RPC_PREFETCH", 1...65_535) ?? 64
            concurrency = try number(environment, "RPC_CONCURRENCY", 1...10_000) ?? 64
            port = try number(environment, "HTTP_PORT", 0...65_535) ?? defaultHTTPPort
            stallAfter = .seconds(try number(environment, "HEALTH_STALL_SECONDS", 1...86_400) ?? 120)
        } catch {
            throw fail("cannot start: \(error.message)")
        }

        let url = environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"
        // Whatever stops the start, one line an operator can act on and exit status 1, rather
        // than a crash trace.
        var configuration: AMQPConfiguration
        do {
            configuration = try AMQPConfiguration(url: url)
        } catch {
            throw fail("AMQP_URL is not usable: \(error)")
        }
        configuration.connectionName = "\(name)@\(ProcessInfo.processInfo.hostName):\(getpid())"
        let connection: AMQPConnection
        do {
            connection = try await AMQPConnection.connect(configuration, logger: logger)
        } catch {
            throw fail("cannot reach the message broker at \(redacted(url)): \(error). Is it running? `make run` starts one.")
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
            throw fail("cannot start: \(error)")
        }

        let responder = RPCResponder(
            service: name, connection: connection, handlers: definition.handlers,
            configuration: .init(
                prefetch: UInt16(clamping: prefetch), concurrency: concurrency, drainTimeout: drain, queueType: queueType, executor: executor),
            rpc: rpc, inbox: definition.inbox, logger: logger)
        // The RPC client after the connection: it keeps deadlines until the responders drained.
        var services: [any Service] = [connection, rpc]
        // The exporter first: it starts before and, the group ending in reverse, stops after
        // the work whose spans it sends.
        if let tracer { services.insert(tracer, at: 0) }
        services += definition.services
        services.append(responder)
        if var subscription = definition.subscription {
            subscription.configuration.queueType = queueType
            subscription.configuration.executor = executor
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
            throw fail("stopped on an error: \(error) (HTTP_PORT \(port) taken? broker gone?)")
        }
        await rpc.close()
        logger.info("stopped")
    }
}
