/// The exchanges, queues and bindings a connection declared, in order, so that recovery can
/// declare them again on a new connection. Deleting an entity forgets it and its bindings.
struct TopologyRecord {
    struct Exchange: Equatable {
        var name: String
        var type: String
        var durable: Bool
        var autoDelete: Bool
        var `internal`: Bool
        var arguments: AMQPTable
    }

    struct Queue: Equatable {
        var name: String
        var durable: Bool
        var exclusive: Bool
        var autoDelete: Bool
        var arguments: AMQPTable
    }

    struct Binding: Equatable {
        var queue: String
        var exchange: String
        var routingKey: String
        var arguments: AMQPTable
    }

    enum Entry: Equatable {
        case exchange(Exchange)
        case queue(Queue)
        case binding(Binding)
    }

    private(set) var entries: [Entry] = []

    mutating func record(_ entry: Entry) {
        // A repeated declaration replaces the earlier one rather than growing the list.
        if let index = entries.firstIndex(where: { $0.identity == entry.identity }) {
            entries[index] = entry
        } else {
            entries.append(entry)
        }
    }

    mutating func unbind(queue: String, exchange: String, routingKey: String) {
        entries.removeAll { entry in
            guard case .binding(let binding) = entry else { return false }
            return binding.queue == queue && binding.exchange == exchange && binding.routingKey == routingKey
        }
    }

    mutating func deleteQueue(_ name: String) {
        entries.removeAll { entry in
            switch entry {
            case .queue(let queue): queue.name == name
            case .binding(let binding): binding.queue == name
            case .exchange: false
            }
        }
    }

    mutating func deleteExchange(_ name: String) {
        entries.removeAll { entry in
            switch entry {
            case .exchange(let exchange): exchange.name == name
            case .binding(let binding): binding.exchange == name
            case .queue: false
            }
        }
    }
}

extension TopologyRecord.Entry {
    fileprivate var identity: String {
        switch self {
        case .exchange(let exchange): "e\u{0}\(exchange.name)"
        case .queue(let queue): "q\u{0}\(queue.name)"
        case .binding(let binding): "b\u{0}\(binding.queue)\u{0}\(binding.exchange)\u{0}\(binding.routingKey)"
        }
    }
}
