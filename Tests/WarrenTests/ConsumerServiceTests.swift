import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// A batch strategy of the test's own: records each batch and acks it with one multiple-ack,
/// as the event store does.
private final class RecordingBatches: ConsumerStrategy, Sendable {
    let queue: String
    let limit: Int
    let batches = Mutex<[[String]]>([])
    let sideChannelOpened = Mutex(false)

    init(queue: String, limit: Int) {
        self.queue = queue
        self.limit = limit
    }

    var prefetch: UInt16 { 100 }
    var delivery: ConsumerDelivery { .batches(upTo: limit) }

    func open(_ channels: ConsumerChannels) async throws -> AMQPChannel {
        try await channels.consuming.declareQueue(queue, durable: false)
        let side = try await channels.open()
        sideChannelOpened.withLock { $0 = true }
        return side
    }

    func consuming(_ session: AMQPChannel) {}

    func handle(_ delivery: AMQPDelivery, in session: AMQPChannel) async {
        await handle(batch: [delivery], in: session)
    }

    func handle(batch: [AMQPDelivery], in session: AMQPChannel) async {
        batches.withLock { $0.append(batch.map { String(decoding: $0.body, as: UTF8.self) }) }
        try? batch.last?.ack(multiple: true)
    }
}

@Suite("One consumer service", .timeLimit(.minutes(2)))
struct ConsumerServiceTests {
    @Test("a batch strategy gets every delivery once, in order, in batches no larger than its limit; all acked")
    func batchesInOrder() async throws {
        let connection = try await Broker.connect()
        let queue = Broker.unique("batches")
        let strategy = RecordingBatches(queue: queue, limit: 7)
        let consumer = ConsumerService(connection: connection, strategy: strategy, logger: Logger(label: "test"))
        let group = ServiceGroup(services: [consumer], gracefulShutdownSignals: [], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let channel = try await connection.openChannel()
        for _ in 0..<200 {
            if let info = try? await channel.inspectQueue(queue), info.consumerCount > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await channel.enableConfirms()
        for index in 0..<100 {
            try await channel.publish(Data("\(index)".utf8), routingKey: queue)
        }
        for _ in 0..<500 where strategy.batches.withLock({ $0.joined().count }) < 100 {
            try await Task.sleep(for: .milliseconds(10))
        }
        let batches = strategy.batches.withLock { $0 }
        #expect(batches.joined().map { Int($0) } == Array(0..<100))
        #expect(batches.allSatisfy { !$0.isEmpty && $0.count <= 7 })
        #expect(strategy.sideChannelOpened.withLock { $0 })

        await group.triggerGracefulShutdown()
        try await running.value
        // Acked: with the consumer's channels closed, anything left unacked would be ready again.
        let info = try await channel.inspectQueue(queue)
        #expect(info.messageCount == 0)
        #expect(info.consumerCount == 0)
        _ = try? await channel.deleteQueue(queue)
        await connection.close()
    }
}
