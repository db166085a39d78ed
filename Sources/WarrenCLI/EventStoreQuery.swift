import Foundation
import Warren
import WarrenAMQP
import WarrenContract

extension EventPage {
    /// Reads a page with `JSONScanner`: bodies stay bytes, so a page of 1,000 events costs a
    /// few milliseconds, not the tens that parsing and printing every body again took.
    init(json: Data) throws(CLIFailure) {
        var scanner = JSONScanner(json)
        var events: [StoredEvent] = []
        var next: String?
        do {
            try scanner.readObject { scanner, key in
                switch key {
                case "events":
                    try scanner.readArray { scanner in events.append(try StoredEvent(&scanner)) }
                case "next":
                    next = try scanner.readOptionalString()
                default:
                    try scanner.skipValue()
                }
            }
        } catch let error as JSONScanner.Malformed {
            throw CLIFailure(.failed, "the event store's answer to events.query \(error.reason) (at byte \(error.offset))")
        } catch let error as CLIFailure {
            throw error
        } catch {
            throw CLIFailure(.failed, "could not read the event store's answer: \(error)")
        }
        self.init(events: events, next: next)
    }
}

extension StoredEvent {
    init(_ scanner: inout JSONScanner) throws {
        var position: Int64?
        var id: String?
        var type: String?
        var timestamp: String?
        var body: Data?
        var aggregateId: String?
        var correlationId: String?
        var causationId: String?
        var headers: AMQPTable = [:]
        try scanner.readObject { scanner, key in
            switch key {
            case "position": position = try scanner.readInt()
            case "id": id = try scanner.readString()
            case "type": type = try scanner.readString()
            case "timestamp": timestamp = try scanner.readString()
            case "aggregateId": aggregateId = try scanner.readOptionalString()
            case "correlationId": correlationId = try scanner.readOptionalString()
            case "causationId": causationId = try scanner.readOptionalString()
            case "body": body = try scanner.readRaw()
            case "headers":
                try scanner.readObject { scanner, name in headers[name] = try scanner.readFieldValue() }
            default: try scanner.skipValue()
            }
        }
        guard let position, let id, let type, let timestamp, let body else {
            throw CLIFailure(.failed, "the event store sent an event without position, id, type, timestamp or body; is it the version this CLI expects?")
        }
        self.init(
            position: position, id: id, type: type, aggregateId: aggregateId, correlationId: correlationId, causationId: causationId,
            timestamp: timestamp, headers: headers, body: body)
    }
}

extension RPCClient {
    /// One page of `events.query`, or the error the event store replied.
    func queryEvents(_ query: EventsQuery, timeout: Duration) async throws -> EventPage {
        let request: Data
        do {
            request = try WireJSON.encode(query)
        } catch {
            throw CLIFailure(.failed, "could not encode the query: \(error)")
        }
        let reply = try await call("events.query", body: request, timeout: timeout)
        if reply.isError { throw reply.serviceError(operation: "events.query") }
        return try EventPage(json: reply.body)
    }
}

/// Reads a selection of the event store page by page, the next page already on its way while
/// the caller works through the current one, and hands out events at most `rate` per second.
/// With `routes`, only the events a queue's bindings route to it; the others are counted by
/// type in `skipped` (and count neither against `limit` nor the rate).
struct EventStorePages: AsyncSequence, Sendable {
    typealias Element = StoredEvent

    let rpc: RPCClient
    let query: EventsQuery
    let limit: Int?
    let rate: Double?
    let timeout: Duration
    var routes: QueueRoutes? = nil
    /// Events left out by `routes`, by type.
    let skipped = Shared<[String: Int]>([:])
    /// Why an event cannot be published as the event store holds it, or nil when it can; such
    /// an event is left out, listed in `unpublishable`, and counts neither against `limit` nor
    /// the rate. A replay goes on past it instead of stopping every replay that covers it.
    var publishable: (@Sendable (StoredEvent) -> String?)? = nil
    /// The events `publishable` left out, in the order met.
    let unpublishable = Shared<[Unpublishable]>([])

    /// An event a replay could not publish as the event store holds it.
    struct Unpublishable: Sendable {
        var position: Int64
        var id: String
        var reason: String
    }

    func makeAsyncIterator() -> Iterator {
        Iterator(pages: self)
    }

    /// Whether `event` goes out; one that the routes leave out is counted in `skipped`.
    /// `decided` remembers the answer per type: a replay has few types and many events.
    func admits(_ event: StoredEvent, decided: inout [String: Bool]) -> Bool {
        if let publishable, let reason = publishable(event) {
            Terminal.note(
                "event #\(event.position) (id \(Terminal.escape(event.id))) skipped: it cannot be published as the event store holds it: \(Terminal.escape(reason))")
            unpublishable.update { $0.append(Unpublishable(position: event.position, id: event.id, reason: reason)) }
            return false
        }
        guard let routes else { return true }
        let routed: Bool
        if let known = decided[event.type] {
            routed = known
        } else {
            routed = routes.routes(event.type)
            // Bounded, in case a store sends a new type with every event.
            if decided.count < 10_000 { decided[event.type] = routed }
        }
        if !routed { skipped.update { $0[event.type, default: 0] += 1 } }
        return routed
    }

    struct Iterator: AsyncIteratorProtocol {
        let pages: EventStorePages
        private var current: [StoredEvent] = []
        private var index = 0
        private var nextPage: Task<EventPage, any Error>?
        /// Every cursor followed so far: a store that hands one out twice is going round in circles.
        private var cursors: Set<String> = []
        private var started = false
        private var handedOut = 0
        private var clockStart = ContinuousClock.now
        private var decided: [String: Bool] = [:]

        init(pages: EventStorePages) {
            self.pages = pages
        }

        mutating func next() async throws -> StoredEvent? {
            if let limit = pages.limit, handedOut >= limit { return nil }
            if !started {
                started = true
                nextPage = fetch(after: nil)
                clockStart = .now
            }
            var event: StoredEvent
            repeat {
                while index == current.count {
                    guard let pending = nextPage else { return nil }
                    let page = try await pending.value
                    // Pages that lead back to one already read would be read (and replayed) forever.
                    if let next = page.next, !cursors.insert(next).inserted {
                        throw CLIFailure(
                            .failed, "the event store sent the cursor \(Terminal.escape(next)) for events.query a second time; stopped instead of replaying the same pages forever")
                    }
                    current = page.events
                    index = 0
                    nextPage = page.next.map { fetch(after: $0) }
                    if page.events.isEmpty, nextPage == nil { return nil }
                }
                event = current[index]
                index += 1
            } while !pages.admits(event, decided: &decided)
            if let rate = pages.rate {
                // Paced token bucket: event n may leave at start + n / rate; sleep only when ahead.
                // Capped, so that no count and rate make a `Duration` out of range.
                let offset = Swift.min(Double(handedOut) / rate, DurationArgument.longest / .seconds(1))
                let due = clockStart + .seconds(offset)
                if due > .now + .milliseconds(2) { try await Task.sleep(until: due) }
            }
            handedOut += 1
            return event
        }

        private func fetch(after cursor: String?) -> Task<EventPage, any Error> {
            var query = pages.query
            query.after = cursor
            let rpc = pages.rpc
            let timeout = pages.timeout
            return Task {
                do {
                    return try await rpc.queryEvents(query, timeout: timeout)
                } catch let error as ServiceError {
                    throw Self.failure(error)
                }
            }
        }

        private static func failure(_ error: ServiceError) -> CLIFailure {
            switch error.code {
            case .timeout:
                CLIFailure(.timeout, "the event store did not answer events.query in time: is it running? `warren topology` shows events.rpc")
            case .unavailable:
                CLIFailure(.failed, "the event store is unavailable (\(Terminal.escape(error.message))): start event-store (`make run`)")
            case .invalid:
                CLIFailure(.usage, "the event store refused the filters: \(Terminal.escape(error.message))")
            default:
                CLIFailure.from(error)
            }
        }
    }
}

/// Counts a selection without keeping it, so a progress bar can show an ETA. Runs beside the
/// replay, on a terminal only: it reads the selection a second time.
func countEvents(rpc: RPCClient, query: EventsQuery, limit: Int?, routes: QueueRoutes?, timeout: Duration) async -> Int? {
    var query = query
    var count = 0
    repeat {
        guard let page = try? await rpc.queryEvents(query, timeout: timeout) else { return nil }
        count += routes.map { routes in page.events.count(where: { routes.routes($0.type) }) } ?? page.events.count
        if let limit, count >= limit { return limit }
        guard let next = page.next, next != query.after else { return page.next == nil ? count : nil }
        query.after = next
    } while !Task.isCancelled
    return nil
}

/// The binding keys by which the `warren.events` topic exchange routes to one queue: a replay
/// straight into that queue sends only what the exchange would have put there.
struct QueueRoutes: Sendable {
    let queue: String
    let bindingKeys: [String]

    init(queue: String, bindingKeys: [String]) {
        self.queue = queue
        self.bindingKeys = bindingKeys
    }

    /// The keys of the bindings from `warren.events` to `queue` among `bindings` (all of a vhost).
    init(queue: String, bindings: [ManagementAPI.Binding]) {
        let keys = bindings.filter { $0.source == EventPublisher.exchange && $0.destination_type == "queue" && $0.destination == queue }
        self.init(queue: queue, bindingKeys: Set(keys.map(\.routing_key)).sorted())
    }

    /// Whether the exchange would route an event published under `routingKey` to the queue.
    func routes(_ routingKey: String) -> Bool {
        bindingKeys.contains { TopicPattern.matches($0, routingKey) }
    }

    /// For people: which events were (or would be) left out and why, `verb` saying how
    /// ("skipped", "would skip"); nil when none were.
    func skippedLine(_ skipped: [String: Int], verb: String) -> String? {
        guard !skipped.isEmpty else { return nil }
        let total = skipped.values.reduce(0, +)
        let byCount = skipped.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        var types = byCount.prefix(10).map { "\(Terminal.escape($0.key)) (\($0.value))" }.joined(separator: ", ")
        if byCount.count > 10 { types += ", … \(byCount.count - 10) more type(s)" }
        let keys = bindingKeys.map { Terminal.escape($0) }.joined(separator: ", ")
        return "\(verb) \(total) event(s) that \(EventPublisher.exchange) does not route to \(Terminal.escape(queue)) (bound for \(keys)): \(types)"
    }
}
