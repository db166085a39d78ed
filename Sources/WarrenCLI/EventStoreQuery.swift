import Foundation
import Warren

/// The event store's `events.query` request (see the README's event store section).
struct EventQuery: Encodable, Sendable {
    var type: String?
    var since: String?
    var until: String?
    var aggregateId: String?
    var correlationId: String?
    var after: String?
    var limit: Int
}

/// One page of `events.query`; `next` is the cursor of the following page, nil at the end.
struct EventPage: Decodable, Sendable {
    var events: [StoredEvent]
    var next: String?
}

/// An event as the event store recorded it.
struct StoredEvent: Decodable, Sendable {
    var position: Int64
    var id: String
    var type: String
    var routingKey: String?
    var aggregateId: String?
    var correlationId: String?
    var causationId: String?
    var timestamp: String
    var headers: [String: JSONValue]?
    var body: JSONValue
}

/// Reads a selection of the event store page by page, the next page already on its way while
/// the caller works through the current one, and hands out events at most `rate` per second.
struct EventStorePages: AsyncSequence, Sendable {
    typealias Element = StoredEvent

    let rpc: RPCClient
    let query: EventQuery
    let limit: Int?
    let rate: Double?
    let timeout: Duration

    func makeAsyncIterator() -> Iterator {
        Iterator(pages: self)
    }

    struct Iterator: AsyncIteratorProtocol {
        let pages: EventStorePages
        private var current: [StoredEvent] = []
        private var index = 0
        private var nextPage: Task<EventPage, any Error>?
        private var started = false
        private var handedOut = 0
        private var clockStart = ContinuousClock.now

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
            while index == current.count {
                guard let pending = nextPage else { return nil }
                let page = try await pending.value
                current = page.events
                index = 0
                nextPage = page.next.map { fetch(after: $0) }
                if page.events.isEmpty, nextPage == nil { return nil }
            }
            if let rate = pages.rate {
                // Paced token bucket: event n may leave at start + n / rate; sleep only when ahead.
                let due = clockStart + .seconds(Double(handedOut) / rate)
                if due > .now + .milliseconds(2) { try await Task.sleep(until: due) }
            }
            let event = current[index]
            index += 1
            handedOut += 1
            return event
        }

        private func fetch(after cursor: String?) -> Task<EventPage, any Error> {
            var query = pages.query
            query.after = cursor
            let rpc = pages.rpc
            let timeout = pages.timeout
            return Task {
                do throws(ServiceError) {
                    return try await rpc.call("events.query", query, as: EventPage.self, timeout: timeout)
                } catch {
                    throw Self.failure(error)
                }
            }
        }

        private static func failure(_ error: ServiceError) -> CLIFailure {
            switch error.code {
            case .timeout:
                CLIFailure(.timeout, "the event store did not answer events.query in time: is it running? `warren topology` shows events.rpc")
            case .unavailable:
                CLIFailure(.failed, "the event store is unavailable (\(error.message)): start event-store (`make run`)")
            case .invalid:
                CLIFailure(.usage, "the event store refused the filters: \(error.message)")
            default:
                CLIFailure.from(error)
            }
        }
    }
}

/// Counts a selection without keeping it, so a progress bar can show an ETA. Runs beside the
/// replay, on a terminal only: it reads the selection a second time.
func countEvents(rpc: RPCClient, query: EventQuery, limit: Int?, timeout: Duration) async -> Int? {
    var query = query
    var count = 0
    repeat {
        guard let page = try? await rpc.call("events.query", query, as: EventPage.self, timeout: timeout) else { return nil }
        count += page.events.count
        if let limit, count >= limit { return limit }
        guard let next = page.next else { return count }
        query.after = next
    } while !Task.isCancelled
    return nil
}
