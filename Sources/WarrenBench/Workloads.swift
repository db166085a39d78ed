import Foundation
import Synchronization
import WarrenAMQP

/// Request/reply through a queue and direct reply-to, `inflight` requests outstanding: a server
/// connection answers and acks each request, a client connection matches replies to callers by
/// correlation id. Same work as the C program's `rpc` case.
struct RPCWorkload {
    let url: String
    let inflight: Int
    let seconds: Double

    func run() async throws -> [String: Double] {
        let queue = benchQueueName("rpc")
        let server = try await AMQPConnection.connect(url: url, connectionName: "warren-bench-rpc-server")
        let client = try await AMQPConnection.connect(url: url, connectionName: "warren-bench-rpc-client")
        let serverChannel = try await server.openChannel()
        try await serverChannel.setPrefetch(UInt16(max(2 * inflight, 16)))
        try await serverChannel.declareQueue(queue, durable: false, autoDelete: true)
        let requests = try await serverChannel.consume(queue: queue)
        let serving = Task {
            for try await request in requests {
                guard let replyTo = request.properties.replyTo else { continue }
                try await serverChannel.publish(
                    request.body, routingKey: replyTo,
                    properties: AMQPProperties(contentType: "application/json", correlationID: request.properties.correlationID))
                try request.ack()
            }
        }

        let clientChannel = try await client.openChannel()
        let table = CorrelationTable()
        // Replies are matched to callers right on the I/O thread: one hop less per request.
        _ = try await clientChannel.consume(queue: "amq.rabbitmq.reply-to", noAck: true) { event in
            if case .delivery(let reply) = event, let id = reply.properties.correlationID.flatMap(UInt64.init) {
                table.complete(id)
            }
        }

        let clock = ContinuousClock()
        let start = clock.now
        let measureFrom = start + .seconds(1)
        let measureUntil = measureFrom + .seconds(seconds)
        let sequence = Counter()
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<inflight {
                group.addTask {
                    var latencies: [Double] = []
                    while true {
                        let sent = clock.now
                        if sent >= measureUntil { return latencies }
                        let id = UInt64(sequence.next())
                        try await clientChannel.publish(
                            benchBody, routingKey: queue,
                            properties: AMQPProperties(contentType: "application/json", correlationID: String(id), replyTo: "amq.rabbitmq.reply-to"))
                        await table.wait(id)
                        let received = clock.now
                        if received >= measureFrom, received < measureUntil {
                            latencies.append(Double((received - sent) / .nanoseconds(1)) / 1_000_000)
                        }
                    }
                }
            }
            var all: [Double] = []
            for try await part in group { all += part }
            return all
        }
        serving.cancel()
        await client.close()
        _ = try? await serverChannel.deleteQueue(queue)
        await server.close()
        let sorted = latencies.sorted()
        return [
            "requests_per_sec": (Double(sorted.count) / seconds).rounded(),
            "p50_ms": percentile(sorted, 0.50),
            "p99_ms": percentile(sorted, 0.99),
        ]
    }
}

/// Matches replies to waiting callers; a reply may beat its caller to the table.
final class CorrelationTable: Sendable {
    private struct State {
        var waiting: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var early: Set<UInt64> = []
    }

    private let state = Mutex(State())

    func complete(_ id: UInt64) {
        let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            if let waiter = state.waiting.removeValue(forKey: id) { return waiter }
            state.early.insert(id)
            return nil
        }
        waiter?.resume()
    }

    func wait(_ id: UInt64) async {
        await withUnsafeContinuation { continuation in
            let arrived = state.withLock { state in
                if state.early.remove(id) != nil { return true }
                state.waiting[id] = continuation
                return false
            }
            if arrived { continuation.resume() }
        }
    }
}

/// Persistent messages with publisher confirms, `window` unconfirmed at most.
struct PublishWorkload {
    let url: String
    let messages: Int
    let window: Int

    func run() async throws -> [String: Double] {
        let connection = try await AMQPConnection.connect(url: url, connectionName: "warren-bench-publish")
        let channel = try await connection.openChannel()
        let queue = benchQueueName("publish")
        try await channel.declareQueue(queue)
        try await channel.enableConfirms()
        let elapsed = try await publishConfirmed(channel, queue: queue, messages: messages, window: window)
        try await channel.deleteQueue(queue)
        await connection.close()
        return ["messages_per_sec": (Double(messages) / elapsed).rounded()]
    }
}

/// Publishes with `window` tasks, each awaiting its confirm before the next; returns seconds.
func publishConfirmed(_ channel: AMQPChannel, queue: String, messages: Int, window: Int) async throws -> Double {
    let next = Counter()
    let properties = AMQPProperties(deliveryMode: .persistent)
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<window {
            group.addTask {
                while next.next() <= messages {
                    try await channel.publish(benchBody, routingKey: queue, properties: properties)
                }
            }
        }
        try await group.waitForAll()
    }
    return Double((ContinuousClock.now - start) / .microseconds(1)) / 1_000_000
}

/// Consumes and acks every message of a prefilled queue at the given prefetch.
struct ConsumeWorkload {
    let url: String
    let messages: Int
    let prefetch: Int

    func run() async throws -> [String: Double] {
        let connection = try await AMQPConnection.connect(url: url, connectionName: "warren-bench-consume")
        let channel = try await connection.openChannel()
        let queue = benchQueueName("consume")
        try await channel.declareQueue(queue)
        try await channel.enableConfirms()
        _ = try await publishConfirmed(channel, queue: queue, messages: messages, window: 1000)

        let consumerChannel = try await connection.openChannel()
        try await consumerChannel.setPrefetch(UInt16(prefetch))
        let start = ContinuousClock.now
        let consumer = try await consumerChannel.consume(queue: queue)
        var count = 0
        for try await delivery in consumer {
            try delivery.ack()
            count += 1
            if count == messages { break }
        }
        await consumer.cancel()
        let elapsed = Double((ContinuousClock.now - start) / .microseconds(1)) / 1_000_000
        try await channel.deleteQueue(queue)
        await connection.close()
        return ["messages_per_sec": (Double(messages) / elapsed).rounded()]
    }
}

func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1)
    return (sorted[min(rank, sorted.count - 1)] * 1000).rounded() / 1000
}

/// A shared counter that tasks draw numbers from, starting at 1.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)

    func next() -> Int { value.add(1, ordering: .relaxed).newValue }
}
