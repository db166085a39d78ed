public import Metrics
import Synchronization

/// Metric handles made once per set of dimensions and reused: making a `Counter` or `Timer`
/// asks the metrics backend for it under a lock each time, which showed in the per-request
/// profile of every service and the gateway. Dimensions must come from a bounded set (an
/// operation the service knows, a route, a status), never from raw input.
public final class MetricHandles<Metric: Sendable>: Sendable {
    private let handles = Mutex<[[String]: Metric]>([:])
    private let make: @Sendable ([String]) -> Metric

    /// `make` gets the dimension values in the order they are asked for.
    public init(_ make: @escaping @Sendable ([String]) -> Metric) {
        self.make = make
    }

    public func callAsFunction(_ values: String...) -> Metric {
        handles.withLock { handles in
            if let handle = handles[values] { return handle }
            let handle = make(values)
            handles[values] = handle
            return handle
        }
    }
}

extension MetricHandles where Metric == Counter {
    /// Counters called `label` with one dimension per name in `names`.
    public convenience init(counter label: String, _ names: String...) {
        self.init { values in Counter(label: label, dimensions: Array(zip(names, values))) }
    }
}

extension MetricHandles where Metric == Metrics.Timer {
    /// Timers called `label` with one dimension per name in `names`.
    public convenience init(timer label: String, _ names: String...) {
        self.init { values in Metrics.Timer(label: label, dimensions: Array(zip(names, values))) }
    }
}
