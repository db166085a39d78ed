public import Foundation
import OpenAPIKit
import Glibc
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals
import Warren
import WarrenAMQP
import WarrenHost

/// The `api-gateway` process: reads the configuration and the OpenAPI document, connects to the
/// broker, and serves HTTP until SIGTERM/SIGINT, when it stops accepting connections, finishes
/// the requests in flight (each bounded by its route's deadline) and only then closes the
/// broker connection.
///
/// Environment: `HTTP_HOST`, `HTTP_PORT` (8080), `AMQP_URL`, `OPENAPI_PATH`, `JWT_SECRET`,
/// `JWT_TTL_SECONDS`, `WARREN_ENV`, `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`, `CORS_ORIGINS`,
/// `HTTP_HEADER_TIMEOUT_SECONDS`, `HTTP_BODY_TIMEOUT_SECONDS`, `HTTP_IDLE_TIMEOUT_SECONDS`,
/// `DRAIN_TIMEOUT_SECONDS`, `HTTP_THREADS`, `LOG_LEVEL`, `LOG_FORMAT` (README, Configuration).
public enum Gateway {
    public static func run(environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        // A bad LOG_LEVEL/LOG_FORMAT is thrown to main, which says it and exits 1.
        try Observability.bootstrapLogging(
            environment, metadataProvider: Observability.tracingRequested(environment) ? Observability.logMetadataProvider : nil)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Observability.metricsFactory(registry: registry))
        Observability.recordBuildInfo(service: "api-gateway", environment: environment)
        var logger = Logger(label: "api-gateway")
        logger[metadataKey: "service"] = "api-gateway"
        let tracer: (any Service)?
        do {
            tracer = try Observability.bootstrapTracing(serviceName: "api-gateway", environment: environment)
        } catch {
            logger.critical("cannot start: the OTEL_* settings are not usable: \(error)")
            throw error
        }

        // Not logged here: `main` logs why it cannot start, once, and exits.
        let configuration = try GatewayConfiguration(environment: environment)
        let document: Data
        do {
            document = try Data(contentsOf: URL(fileURLWithPath: configuration.openAPIPath))
        } catch {
            throw GatewayConfigurationError(
                "cannot read the OpenAPI document at \(configuration.openAPIPath): set OPENAPI_PATH or start from the repository's root")
        }
        // Served as they are (`/openapi.yaml`) and shown in `/docs`: bytes that are not UTF-8
        // would be one thing on the wire and another on the page.
        guard let openAPIText = String(validating: document, as: UTF8.self) else {
            throw GatewayConfigurationError("the OpenAPI document at \(configuration.openAPIPath) is not UTF-8 text")
        }
        let contract = try RouteTable.decode(openAPIText)
        let routes = try RouteTable(document: contract)
        // The AsyncAPI document is read from beside the OpenAPI one (both are in schemas/).
        let asyncAPIPath = URL(fileURLWithPath: configuration.openAPIPath).deletingLastPathComponent().appendingPathComponent("asyncapi.yaml")
        var asyncAPIText: String?
        if FileManager.default.fileExists(atPath: asyncAPIPath.path) {
            // There but unreadable (a directory, no permission) or not UTF-8: a mistake to show.
            guard let data = try? Data(contentsOf: asyncAPIPath) else {
                throw GatewayConfigurationError("cannot read \(asyncAPIPath.path), the AsyncAPI document beside the OpenAPI one")
            }
            guard let text = String(validating: data, as: UTF8.self) else {
                throw GatewayConfigurationError("the AsyncAPI document at \(asyncAPIPath.path) is not UTF-8 text")
            }
            asyncAPIText = text
        } else {
            // A gateway may run with a contract of its own: nothing is wrong, /docs just has less.
            logger.notice("no asyncapi.yaml beside the OpenAPI document: /docs shows the HTTP API only", metadata: ["path": "\(asyncAPIPath.path)"])
        }
        let docs = try GatewayDocs(openAPIText: openAPIText, document: contract, asyncAPIText: asyncAPIText)
        if configuration.usesDevelopmentSecret {
            logger.warning(
                "JWT_SECRET is unset or the development secret: signing tokens with the DEVELOPMENT secret; never do this in production",
                metadata: ["warren_env": "\(configuration.environmentName.rawValue)"])
        }

        let connection: AMQPConnection
        do {
            var amqp = try AMQPConfiguration(url: configuration.amqpURL)
            amqp.connectionName = "api-gateway@\(ProcessInfo.processInfo.hostName):\(getpid())"
            connection = try await AMQPConnection.connect(amqp, logger: logger)
        } catch {
            logger.critical("cannot reach the message broker: \(error). Is it running? `make run` starts one.")
            throw error
        }
        let rpc = try await RPCClient.start(connection: connection, logger: logger)
        let responder = GatewayResponder(
            routes: routes, services: rpc,
            tokens: await TokenAuthority(secret: configuration.jwtSecret, lifetime: configuration.tokenLifetime),
            configuration: configuration, openAPI: document,
            health: GatewayHealth(connection: connection, services: routes.services), registry: registry, logger: logger, docs: docs)
        let server = GatewayHTTPServer(responder: responder, configuration: configuration, logger: logger) { [logger] port in
            logger.info(
                "ready",
                metadata: [
                    "http_port": "\(port)", "routes": "\(routes.routes.count)", "services": "\(routes.services.joined(separator: ","))",
                ])
        }
        let group = ServiceGroup(
            configuration: .init(
                services: (tracer.map { [.init(service: $0)] } ?? []) + [.init(service: connection), .init(service: rpc), .init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
        await rpc.close()
        logger.info("stopped")
    }
}
