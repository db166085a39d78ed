import Synchronization
import WarrenAMQP

/// The batch consumer's hand-over: deliveries from the connection's I/O thread to the task that
/// takes them in batches, whatever arrived while it handled the previous batch (ConsumerService).
final class DeliveryInbox: Sendable {
    private struct State {
        var deliveries: [AMQPDelivery] = []
        var ended = false
        var failure: AMQPError?
        var waiter: CheckedContinuation<Void, Never>?

        mutating func takeWaiter() -> CheckedContinuation<Void, Never>? {
            defer { waiter = nil }
            return waiter
        }
    }

    private let state = Mutex(State())

    /// The consumer's handler. It runs on the I/O thread, so it only appends and wakes.
    func receive(_ event: AMQPConsumerEvent) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            switch event {
            case .delivery(let delivery): state.deliveries.append(delivery)
            // The consumer comes back after the reconnect; what was unacked comes again.
            case .interrupted: return nil
            case .ended(let error):
                state.ended = true
                state.failure = error
            }
            return state.takeWaiter()
        }
        waiter?.resume()
    }

    /// Up to `limit` deliveries, in order, waiting for the first; nil once the consumer ended
    /// and everything was taken. Throws the broker's reason if it ended the consumer.
    func next(upTo limit: Int) async throws -> [AMQPDelivery]? {
        while true {
            try Task.checkCancellation()
            let (taken, ended) = try state.withLock { state throws -> ([AMQPDelivery], Bool) in
                if let failure = state.failure { throw failure }
                let count = min(limit, state.deliveries.count)
                let batch = Array(state.deliveries.prefix(count))
                state.deliveries.removeFirst(count)
                return (batch, state.ended)
            }
            if !taken.isEmpty { return taken }
            if ended { return nil }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                    let wakeNow = state.withLock { state in
                        if !state.deliveries.isEmpty || state.ended || Task.isCancelled { return true }
                        state.waiter = waiter
                        return false
                    }
                    if wakeNow { waiter.resume() }
                }
            } onCancel: {
                state.withLock { $0.takeWaiter() }?.resume()
            }
        }
    }
}
