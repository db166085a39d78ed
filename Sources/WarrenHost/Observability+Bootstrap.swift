import Foundation
import Glibc
import Instrumentation
public import Logging
import Metrics
import OTel
public import Prometheus
public import ServiceLifecycle
public import Warren
public import WarrenAMQP

/// What only an executable sets up, once, in `main` (swift-log and swift-metrics: libraries
/// never bootstrap): logging from `LOG_LEVEL`/`LOG_FORMAT`, Prometheus metrics with Warren's
/// buckets, OTLP trace export when the `OTEL_*` variables ask for it.
extension Observability {
    /// A Prometheus factory whose timers are histograms with `durationBuckets`.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets.map { .nanoseconds(Int64(($0 * 1e9).rounded())) }
        factory.defaultValueHistogramBuckets = durationBuckets
        return factory
    }

    /// Bootstraps the tracer (swift-otel, OTLP over HTTP, `OTEL_*` variables as OpenTelemetry
    /// defines them; `OTEL_SERVICE_NAME` defaults to `serviceName`) when `tracingRequested`;
    /// returns the exporter's service, to run beside the process's own. Returns nil and
    /// bootstraps nothing otherwise: the tracer stays the no-op one, spans cost nothing.
    /// Throws when the variables are not usable (say, `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`:
    /// only `http/protobuf` and `http/json` are built in).
    public static func bootstrapTracing(serviceName: String, environment: [String: String]) throws -> (any Service)? {
        guard tracingRequested(environment) else { return nil }
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        configuration.logs.enabled = false  // logs stay JSON lines on stdout
        configuration.metrics.enabled = false  // metrics stay Prometheus
        configuration.traces.enabled = true
        configuration.diagnosticLogLevel = .warning
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(backend.factory)
        MessageTracing.enable()
        return backend.service
    }

    /// `trace_id` and `span_id` of the current span on every log line written inside one.
    public static let logMetadataProvider: Logger.MetadataProvider = OTel.makeLoggingMetadataProvider()

    /// The `/metrics` body: the registry's families, updated first with what is read at scrape
    /// time (the broker connection's state, this process from /proc).
    public static func scrape(registry: PrometheusCollectorRegistry, connection: AMQPConnection?) -> [UInt8] {
        if let connection { recordConnectionMetrics(connection) }
        var buffer = registry.emitToBuffer()
        buffer.append(contentsOf: Array(ProcessMetrics.read().utf8))
        return buffer
    }

    /// Text on a terminal, JSON lines elsewhere (or as `LOG_FORMAT` says); `metadataProvider`
    /// adds to every line (`trace_id`, `span_id` when tracing). Throws `invalid` for a bad
    /// `LOG_LEVEL` or `LOG_FORMAT`, before anything is bootstrapped.
    public static func bootstrapLogging(_ environment: [String: String], metadataProvider: Logger.MetadataProvider? = nil) throws(ServiceError) {
        let settings = try ServiceHost.logSettings(environment)
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
}
