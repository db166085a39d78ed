import Foundation

/// One flow (every event with one correlation id) as a causation tree: which event caused
/// which, from which service, when, and how long after its cause. The body of the event
/// store's `events.flow` reply, printed by `warren flow` and served at
/// `GET /events/flows/{correlationId}`.
///
/// A flow that stopped half way is marked: an event that starts something that must be settled
/// (`order.created` → `order.confirmed` or `order.cancelled`; `payment.succeeded` →
/// `order.confirmed` or `payment.refunded`; for the same aggregate) without its settling event
/// is a problem, and the status is `stopped`; `warren flow` also marks an event of the flow
/// found in a dead-letter queue. The settling event may belong to another flow (a customer's
/// `orders.cancel` is a request, and a flow, of its own): the event store looks for it there.
public struct EventFlow: Codable, Sendable, Equatable {
    /// `complete`: nothing left open. `stopped`: something is unsettled or dead-lettered.
    /// `empty`: no event has this correlation id.
    public enum Status: String, WireEnum {
        case complete, stopped, empty
    }

    public struct Node: Codable, Sendable, Equatable {
        public var id: String
        public var type: String
        /// The publishing service (AMQP `app_id`), when it said.
        public var source: String?
        public var aggregateId: String?
        public var causationId: String?
        /// The AMQP timestamp as stored: `2026-11-20T14:13:42.000Z` (whole seconds).
        public var timestamp: String
        /// When the event store took it, in milliseconds: the times the gaps are measured with.
        public var recordedAt: String?
        /// Milliseconds after the event that caused it; for a root, after the flow's first
        /// event (0 for the first). From `recordedAt` (else `timestamp`).
        public var gapMilliseconds: Int64?
        /// Dead-letter queues holding a copy of this event (set by `warren flow`).
        public var deadLetteredIn: [String]?
        public var children: [Node]

        public init(
            id: String, type: String, source: String? = nil, aggregateId: String? = nil, causationId: String? = nil, timestamp: String,
            recordedAt: String? = nil, gapMilliseconds: Int64? = nil, deadLetteredIn: [String]? = nil, children: [Node] = []
        ) {
            self.id = id
            self.type = type
            self.source = source
            self.aggregateId = aggregateId
            self.causationId = causationId
            self.timestamp = timestamp
            self.recordedAt = recordedAt
            self.gapMilliseconds = gapMilliseconds
            self.deadLetteredIn = deadLetteredIn
            self.children = children
        }
    }

    public var correlationId: String
    public var status: Status
    /// One sentence per reason the flow stopped half way.
    public var problems: [String]
    /// How many events the flow has (all levels).
    public var count: Int
    /// The roots: events whose cause is not an event of the flow (a request, usually).
    public var events: [Node]

    /// The events that must be followed by one of the listed types, for the same aggregate: an
    /// order is confirmed or cancelled; a charge is confirmed by the order, or refunded when the
    /// order was cancelled.
    public static let settledBy: [String: [String]] = [
        "order.created": ["order.confirmed", "order.cancelled"],
        "payment.succeeded": ["order.confirmed", "payment.refunded"],
    ]

    /// The events of `events` that no other event of `events` settles, each with the types
    /// that would (`settledBy`): those to look for outside the flow.
    public static func unsettled(_ events: [Node]) -> [(event: Node, settling: [String])] {
        events.compactMap { event in
            guard let settling = settledBy[event.type] else { return nil }
            let settled = events.contains { other in settling.contains(other.type) && other.aggregateId == event.aggregateId }
            return settled ? nil : (event, settling)
        }
    }

    /// Builds the tree from `events` in store order (`Node.children` left empty there).
    /// `settledElsewhere`: ids of events of the flow that an event of another flow settles.
    public static func build(correlationId: String, events: [Node], settledElsewhere: Set<String> = []) -> EventFlow {
        guard !events.isEmpty else { return EventFlow(correlationId: correlationId, status: .empty, problems: [], count: 0, events: []) }
        let times = events.map { parseTime($0.recordedAt ?? $0.timestamp) }
        let first = times.compactMap { $0 }.min()
        var index: [String: Int] = [:]
        for (position, event) in events.enumerated() where index[event.id] == nil { index[event.id] = position }
        var children: [Int: [Int]] = [:]
        var roots: [Int] = []
        for (position, event) in events.enumerated() {
            // A cause later in the list than its effect, or the event itself, cannot make a
            // cycle: only earlier events are parents.
            if let cause = event.causationId, let parent = index[cause], parent < position {
                children[parent, default: []].append(position)
            } else {
                roots.append(position)
            }
        }
        let tree = roots.map { attach(events[$0], position: $0, times: times, children: children, events: events, reference: first) }

        var problems: [String] = []
        for (event, settling) in unsettled(events) where !settledElsewhere.contains(event.id) {
            problems.append("\(event.type) \(event.aggregateId ?? event.id) has no \(settling.joined(separator: " or ")): the flow stopped half way")
        }
        return EventFlow(
            correlationId: correlationId, status: problems.isEmpty ? .complete : .stopped, problems: problems, count: events.count, events: tree)
    }

    private static func attach(_ node: Node, position: Int, times: [Date?], children: [Int: [Int]], events: [Node], reference: Date?) -> Node {
        var node = node
        node.gapMilliseconds = gap(times[position], after: reference)
        node.children = (children[position] ?? []).map {
            attach(events[$0], position: $0, times: times, children: children, events: events, reference: times[position])
        }
        return node
    }

    /// Marks the events with these ids as dead-lettered (id → queues) and the flow as stopped.
    /// A message of the flow that is not in the store (a request parked in `<service>.rpc.dlq`,
    /// an event the store itself could not keep) is a problem all the same.
    public mutating func markDeadLettered(_ queues: [String: [String]]) {
        guard !queues.isEmpty else { return }
        var seen: Set<String> = []
        func mark(_ node: inout Node) {
            if let found = queues[node.id] {
                node.deadLetteredIn = found
                seen.insert(node.id)
                problems.append("\(node.type) \(node.id) is in \(found.joined(separator: ", ")): it was not handled")
            }
            for index in node.children.indices { mark(&node.children[index]) }
        }
        for index in events.indices { mark(&events[index]) }
        for (id, found) in queues.sorted(by: { $0.key < $1.key }) where !seen.contains(id) {
            problems.append("message \(id) of this flow is in \(found.joined(separator: ", ")): it was not handled")
        }
        status = .stopped
    }

    static func parseTime(_ text: String) -> Date? {
        WireTime.parse(text)?.date
    }
}

/// Milliseconds from `reference` to `time`, when both are known; clamped to ±1 year.
private func gap(_ time: Date?, after reference: Date?) -> Int64? {
    guard let time, let reference else { return nil }
    let milliseconds = (time.timeIntervalSince(reference) * 1000).rounded()
    return Int64(min(max(milliseconds, -31_536_000_000), 31_536_000_000))
}

/// The body of `events.flow`: `{"correlationId":"…"}` (schemas/event-store/events.flow.request.schema.json).
public struct EventFlowRequest: Codable, Sendable, Validatable {
    public var correlationId: String

    public init(correlationId: String) { self.correlationId = correlationId }

    public func validate() throws(ServiceError) {
        try Check.length(correlationId, "correlationId", FieldLimits.eventsQueryCorrelationID.range)
    }
}
