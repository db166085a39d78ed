public import Foundation
import Logging
import ServiceLifecycle
import Metrics
import Prometheus
public import Warren

/// The part of a service executable's `main` that only an executable may do: bootstrap the
/// process-wide logging, metrics and tracing from the environment (swift-log and swift-metrics:
/// libraries never bootstrap), then run `ServiceHost.run`. It returns the exit status rather
/// than exit, so that `main` alone ends the process:
///
/// ```swift
/// if case .exit(let status) = commandLine.resolve() { exit(status) }
/// exit(await ServiceProcess.run(name: "orders", defaultHTTPPort: httpPort) { resources in … })
/// ```
public enum ServiceProcess {
    /// 0 after a graceful shutdown; 1 when the service could not start or stopped on an error
    /// (a bad `LOG_LEVEL`/`LOG_FORMAT` said on stderr, anything later logged as critical).
    public static func run(
        name: String, defaultHTTPPort: Int,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        setup: @Sendable (ServiceResources) async throws -> ServiceDefinition
    ) async -> Int32 {
        let tracing = Observability.tracingRequested(environment)
        do {
            try Observability.bootstrapLogging(environment, metadataProvider: tracing ? Observability.logMetadataProvider : nil)
        } catch {
            FileHandle.standardError.write(Data("cannot start: \(error.message)\n".utf8))
            return 1
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(Observability.metricsFactory(registry: registry))
        var logger = Logger(label: name)
        logger[metadataKey: "service"] = "\(name)"
        let tracer: (any Service)?
        do {
            tracer = try Observability.bootstrapTracing(serviceName: name, environment: environment)
        } catch {
            logger.critical("cannot start: the OTEL_* settings are not usable: \(error)")
            return 1
        }
        do {
            try await ServiceHost.run(
                name: name, defaultHTTPPort: defaultHTTPPort, environment: environment, registry: registry, tracer: tracer, logger: logger,
                setup: setup)
            return 0
        } catch {
            return 1  // logged by the host
        }
    }
}
