import Synchronization

/// The message ids a consumer has applied, so that a redelivered or replayed event is applied
/// at most once. A service keeps them in its own store, ideally written in the same
/// transaction as the effect; `InMemoryProcessedMessages` is for tests and stateless consumers.
public protocol ProcessedMessages: Sendable {
    func contains(_ messageID: String) async throws -> Bool
    func insert(_ messageID: String) async throws
}

/// Processed ids in memory (bounded): lost on restart, so only for tests and effects that are
/// harmless to repeat after a restart.
public final class InMemoryProcessedMessages: ProcessedMessages {
    private struct State {
        var ids: Set<String> = []
        var order: [String] = []
    }

    private let state = Mutex(State())
    private let capacity: Int

    public init(capacity: Int = 100_000) { self.capacity = capacity }

    public func contains(_ messageID: String) async throws -> Bool {
        state.withLock { $0.ids.contains(messageID) }
    }

    public func insert(_ messageID: String) async throws {
        state.withLock { state in
            guard state.ids.insert(messageID).inserted else { return }
            state.order.append(messageID)
            if state.order.count > capacity {
                let dropped = state.order.count / 10
                for id in state.order.prefix(dropped) { state.ids.remove(id) }
                state.order.removeFirst(dropped)
            }
        }
    }
}
