import Foundation
import Glibc
import Metrics
import Synchronization
public import WarrenAMQP

/// What Warren's metrics and traces share, whatever the process exports them with: the
/// duration buckets, when trace export is asked for, and the metrics read at scrape time
/// (process, broker connection, build). Bootstrapping them is the executable's (WarrenHost's
/// `Observability.bootstrap…`, called from `main`): libraries never bootstrap.
public enum Observability {
    /// Histogram buckets of every duration, in seconds: from 100 µs (a `users.get` served from
    /// memory) to 10 s (a call's deadline).
    public static let durationBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    /// The version in `warren_build_info`: `WARREN_VERSION` if set (an image's tag), else `dev`.
    public static func version(_ environment: [String: String]) -> String {
        environment["WARREN_VERSION"].flatMap { $0.isEmpty ? nil : $0 } ?? "dev"
    }

    /// True when `environment` asks for trace export: `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
    /// traces-only `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set and `OTEL_SDK_DISABLED` not `true`.
    public static func tracingRequested(_ environment: [String: String]) -> Bool {
        guard environment["OTEL_SDK_DISABLED"]?.lowercased() != "true" else { return false }
        return [environment["OTEL_EXPORTER_OTLP_ENDPOINT"], environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]]
            .contains { ($0 ?? "").isEmpty == false }
    }

    /// Updates what is read off the broker connection at scrape time (`warren_amqp_connection_up`,
    /// `warren_amqp_reconnects_total`); `/metrics` calls it before it renders the registry.
    public static func recordConnectionMetrics(_ connection: AMQPConnection) {
        ConnectionMetrics.shared.update(connection)
    }

    /// `warren_build_info{service,version} 1`.
    public static func recordBuildInfo(service: String, environment: [String: String]) {
        Gauge(label: "warren_build_info", dimensions: [("service", service), ("version", version(environment))]).record(1)
    }
}

/// `warren_amqp_connection_up` (0/1) and `warren_amqp_reconnects_total`, read off the
/// connection at scrape time (its state and recovery count), so the AMQP layer needs no hook.
final class ConnectionMetrics: Sendable {
    static let shared = ConnectionMetrics()
    private let up = Gauge(label: "warren_amqp_connection_up")
    private let reconnects = Counter(label: "warren_amqp_reconnects_total")
    private let counted = Mutex(0)

    func update(_ connection: AMQPConnection) {
        up.record(connection.isConnected ? 1 : 0)
        let recoveries = connection.recoveries
        let delta = counted.withLock { counted in
            defer { counted = max(counted, recoveries) }
            return max(recoveries - counted, 0)
        }
        if delta > 0 { reconnects.increment(by: delta) }
    }
}

/// The standard process metrics of Prometheus clients, read from /proc at scrape time:
/// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
/// `process_start_time_seconds`. Empty where /proc is not (a family left out, never a guess).
public enum ProcessMetrics {
    /// The families in Prometheus text format.
    public static func read() -> String {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let fields = statFields(stat)
        else { return "" }
        let ticks = Double(max(sysconf(Int32(_SC_CLK_TCK)), 1))
        let pageSize = Double(max(sysconf(Int32(_SC_PAGESIZE)), 1))
        var text = ""
        // Fields counted from 3 after the command's closing parenthesis: utime 14, stime 15,
        // starttime 22, rss 24 (proc(5)).
        if let utime = fields.field(14), let stime = fields.field(15) {
            text += family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", (utime + stime) / ticks)
        }
        if let rss = fields.field(24) {
            text += family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss * pageSize)
        }
        if let descriptors = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            text += family("process_open_fds", "gauge", "Number of open file descriptors.", Double(descriptors.count))
        }
        if let start = fields.field(22), let boot = bootTime() {
            text += family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", boot + start / ticks)
        }
        return text
    }

    struct StatFields {
        let values: [Substring]
        /// Field `number` of proc(5) (1-based), as a number.
        func field(_ number: Int) -> Double? {
            let index = number - 3
            guard index >= 0, index < values.count else { return nil }
            return Double(values[index])
        }
    }

    /// The fields after `(comm)`, which may itself contain spaces and parentheses.
    static func statFields(_ stat: String) -> StatFields? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        return StatFields(values: stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true))
    }

    private static func bootTime() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    private static func family(_ name: String, _ type: String, _ help: String, _ value: Double) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
    }
}
