import DequeModule
import Foundation

/// Matches publisher confirms (basic.ack / basic.nack, possibly `multiple`) and mandatory returns
/// (basic.return) to the publishes awaiting them, on one channel.
///
/// A basic.return carries no sequence number, but RabbitMQ sends it before the ack that covers
/// the same message. So a return marks the oldest unresolved mandatory publish with the same
/// exchange, routing key and body, and that publish fails when its ack arrives. Pure: no I/O.
struct ConfirmTracker<Waiter> {
    struct Mandatory {
        var exchange: String
        var routingKey: String
        var body: Data
    }

    private struct Pending {
        var sequence: UInt64
        var waiter: Waiter
        var mandatory: Mandatory?
        var returned: AMQPError?
        var exchange: String
        var routingKey: String
    }

    private var pending: Deque<Pending> = []
    private(set) var nextSequence: UInt64 = 1

    var isEmpty: Bool { pending.isEmpty }

    /// Records a publish and returns its sequence number (the delivery tag its confirm will carry).
    @discardableResult
    mutating func published(_ waiter: Waiter, exchange: String, routingKey: String, mandatory: Mandatory?) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        pending.append(Pending(sequence: sequence, waiter: waiter, mandatory: mandatory, returned: nil, exchange: exchange, routingKey: routingKey))
        return sequence
    }

    /// Records a basic.return; the matching publish fails when its confirm arrives.
    mutating func returned(exchange: String, routingKey: String, body: Data, code: UInt16, text: String) {
        guard let index = pending.firstIndex(where: { entry in
            guard entry.returned == nil, let mandatory = entry.mandatory else { return false }
            return mandatory.exchange == exchange && mandatory.routingKey == routingKey && mandatory.body == body
        }) else { return }
        pending[index].returned = .returned(exchange: exchange, routingKey: routingKey, code: code, text: text)
    }

    /// Resolves the publishes a basic.ack or basic.nack covers, in publish order.
    mutating func confirmed(deliveryTag: UInt64, multiple: Bool, ack: Bool) -> [(Waiter, Result<Void, AMQPError>)] {
        var resolved: [(Waiter, Result<Void, AMQPError>)] = []
        func outcome(_ entry: Pending) -> Result<Void, AMQPError> {
            if let returned = entry.returned { return .failure(returned) }
            return ack ? .success(()) : .failure(.nacked(exchange: entry.exchange, routingKey: entry.routingKey))
        }
        if multiple {
            while let first = pending.first, first.sequence <= deliveryTag {
                pending.removeFirst()
                resolved.append((first.waiter, outcome(first)))
            }
        } else if let first = pending.first, first.sequence == deliveryTag {
            pending.removeFirst()
            resolved.append((first.waiter, outcome(first)))
        } else if let index = pending.firstIndex(where: { $0.sequence == deliveryTag }) {
            let entry = pending.remove(at: index)
            resolved.append((entry.waiter, outcome(entry)))
        }
        return resolved
    }

    /// Ends every pending publish: the channel or connection is gone and their fate is unknown.
    mutating func failAll() -> [Waiter] {
        let waiters = pending.map(\.waiter)
        pending.removeAll()
        return waiters
    }

    /// A reopened channel numbers its publishes from 1 again.
    mutating func reset() {
        precondition(pending.isEmpty, "fail pending confirms before resetting")
        nextSequence = 1
    }
}
