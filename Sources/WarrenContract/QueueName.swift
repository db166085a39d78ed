import Foundation

/// A queue named by Warren's convention, and the one place that spells the names
/// (schemas/asyncapi.yaml): for a service `payments`,
///
/// | kind                 | name                               | what it holds                          |
/// |----------------------|------------------------------------|----------------------------------------|
/// | `rpc`                | `payments.rpc`                     | requests (`payments.get`, …)           |
/// | `rpcDeadLetter`      | `payments.rpc.dlq`                 | requests that failed for good          |
/// | `events`             | `payments.events`                  | the events the service subscribed to   |
/// | `eventsRetry(ms)`    | `payments.events.retry.5000ms`     | events waiting `ms` for another try    |
/// | `eventsDeadLetter`   | `payments.events.dlq`              | events given up on                     |
///
/// The event store is the service `events` (`events.rpc`, `events.events`, `events.events.dlq`).
/// A service name may hold dots (`a.b.rpc` is the service `a.b`); it is never empty.
public struct QueueName: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        case rpc
        case rpcDeadLetter
        case events
        case eventsDeadLetter
        /// Events wait here `milliseconds` (the queue's `x-message-ttl`), then go back to `events`.
        case eventsRetry(milliseconds: Int64)
    }

    public let service: String
    public let kind: Kind

    public init(service: String, kind: Kind) {
        self.service = service
        self.kind = kind
    }

    public static func rpc(_ service: String) -> QueueName { QueueName(service: service, kind: .rpc) }
    public static func rpcDeadLetter(_ service: String) -> QueueName { QueueName(service: service, kind: .rpcDeadLetter) }
    public static func events(_ service: String) -> QueueName { QueueName(service: service, kind: .events) }
    public static func eventsDeadLetter(_ service: String) -> QueueName { QueueName(service: service, kind: .eventsDeadLetter) }
    /// The retry queue for `delay`, in whole milliseconds (saturating, never trapping).
    public static func eventsRetry(_ service: String, delay: Duration) -> QueueName {
        QueueName(service: service, kind: .eventsRetry(milliseconds: delay.wholeMilliseconds))
    }

    /// The topic exchange every event is published to, routed by event type.
    public static let eventExchange = "warren.events"
    /// The event store's service name: it answers `events.query` on `events.rpc` and keeps
    /// every event from `events.events` (bound with `#`).
    public static let eventStoreService = "events"

    /// The queue that serves an operation: `users.get` → `users.rpc` (the part before the
    /// first dot names the service; an operation without a dot is its own service).
    public static func serving(operation: String) -> QueueName {
        let service = operation.split(separator: ".", maxSplits: 1).first.map(String.init) ?? operation
        return .rpc(service)
    }

    /// The name as declared on the broker.
    public var name: String {
        switch kind {
        case .rpc: "\(service).rpc"
        case .rpcDeadLetter: "\(service).rpc.dlq"
        case .events: "\(service).events"
        case .eventsDeadLetter: "\(service).events.dlq"
        case .eventsRetry(let milliseconds): "\(service).events.retry.\(milliseconds)ms"
        }
    }

    public var description: String { name }

    public var isDeadLetter: Bool { kind == .rpcDeadLetter || kind == .eventsDeadLetter }

    /// For a dead-letter queue, the queue its messages came from (and are requeued to):
    /// `x.rpc.dlq` → `x.rpc`, `x.events.dlq` → `x.events`; nil for any other queue.
    public var deadLetterSource: QueueName? {
        switch kind {
        case .rpcDeadLetter: .rpc(service)
        case .eventsDeadLetter: .events(service)
        default: nil
        }
    }

    /// The dead-letter queue of an `rpc` or `events` queue; nil for the others.
    public var deadLetterQueue: QueueName? {
        switch kind {
        case .rpc: .rpcDeadLetter(service)
        case .events: .eventsDeadLetter(service)
        default: nil
        }
    }

    /// Reads a queue name by the convention above; nil for a name that is not Warren's (no
    /// known suffix, an empty service such as `.rpc`, a retry delay that is not digits).
    /// `parse(q.name) == q` for every `q` with a non-empty service.
    public init?(parsing name: String) {
        // Longest suffix first: `x.events.dlq` is a dead-letter queue, not the events of `x.events.dlq`'s prefix.
        let fixed: [(String, Kind)] = [(".rpc.dlq", .rpcDeadLetter), (".events.dlq", .eventsDeadLetter), (".rpc", .rpc), (".events", .events)]
        for (suffix, kind) in fixed where name.hasSuffix(suffix) {
            let service = String(name.dropLast(suffix.count))
            guard !service.isEmpty else { return nil }
            self.init(service: service, kind: kind)
            return
        }
        let marker = ".events.retry."
        guard name.hasSuffix("ms"), let range = name.range(of: marker, options: .backwards) else { return nil }
        let service = String(name[..<range.lowerBound])
        let digits = name[range.upperBound...].dropLast(2)
        guard !service.isEmpty, !digits.isEmpty, digits.utf8.allSatisfy({ (48...57).contains($0) }), let milliseconds = Int64(digits) else {
            return nil
        }
        self.init(service: service, kind: .eventsRetry(milliseconds: milliseconds))
    }
}
