import Foundation
import Synchronization
import Testing
import WarrenTestSupport
import WarrenAMQP

/// Input and timing that once broke the connection: each must stay an error for one call, or
/// not an error at all, with the connection untouched (no recovery).
@Suite("Robustness", .timeLimit(.minutes(1)))
struct RobustnessTests {
    @Test("names, header keys and properties AMQP cannot carry are refused before anything is sent", arguments: [
        "long routing key", "long header key", "long nested header key", "huge headers", "long message id",
    ])
    func oversizedInput(kind: String) async throws {
        let queue = Broker.unique("oversize")
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            let long = String(repeating: "k", count: 300)
            var routingKey = queue
            var properties = AMQPProperties()
            switch kind {
            case "long routing key": routingKey = long
            case "long header key": properties.headers = [long: "v"]
            case "long nested header key": properties.headers = ["outer": .table([long: 1])]
            case "huge headers": properties.headers = ["big": .string(String(repeating: "x", count: 200_000))]
            default: properties.messageID = long
            }
            await #expect {
                try await channel.publish(Data("x".utf8), routingKey: routingKey, properties: properties)
            } throws: { error in
                guard case .invalidArgument = error as? AMQPError else { return false }
                return true
            }
            try await channel.publish(Data("fine".utf8), routingKey: queue)
            #expect(try await channel.inspectQueue(queue).messageCount == 1)
            #expect(connection.recoveries == 0)
        }
    }

    @Test("a queue name over 255 bytes is refused without touching the connection")
    func longQueueName() async throws {
        try await withChannel { connection, channel in
            await #expect(throws: AMQPError.self) {
                try await channel.declareQueue(String(repeating: "q", count: 256))
            }
            #expect(connection.recoveries == 0)
            #expect(connection.isConnected)
        }
    }

    @Test("closing a channel while the broker closes it leaves the connection usable")
    func closeRacingBrokerClose() async throws {
        try await withChannel { connection, _ in
            for _ in 0..<5 {
                let channel = try await connection.openChannel()
                try channel.send(Data("x".utf8), exchange: Broker.unique("absent"), routingKey: "k")
                await channel.close()
                let next = try await connection.openChannel()
                let queue = Broker.unique("after-close")
                try await next.declareQueue(queue, durable: false, autoDelete: true)
                try await next.deleteQueue(queue)
                await next.close()
            }
            #expect(connection.recoveries == 0)
        }
    }

    @Test("a channel.close queued during another channel's call is seen before the next call on it")
    func queuedChannelClose() async throws {
        var configuration = try Broker.configuration()
        configuration.operationTimeout = .seconds(10)
        let connection = try await AMQPConnection.connect(configuration)
        let first = try await connection.openChannel()
        let second = try await connection.openChannel()
        let queue = Broker.unique("queued-close")
        let started = ContinuousClock.now
        try second.send(Data("x".utf8), exchange: Broker.unique("absent"), routingKey: "k")
        async let one: Void = { try await first.declareQueue(queue, durable: false, autoDelete: true) }()
        async let two: Void = { try await second.declareQueue(queue, durable: false, autoDelete: true) }()
        try await one
        _ = try? await two  // may fail with the 404 of the earlier publish, or succeed after reopening
        // Missing the queued close, the second call would wait for the 10 s operation timeout
        // (and then drop the connection); a broker busy with the parallel suite takes seconds.
        #expect(started.duration(to: .now) < .seconds(9))
        try await Task.sleep(for: .milliseconds(200))
        #expect(connection.recoveries == 0)
        try await first.deleteQueue(queue)
        await connection.close()
    }

    @Test("a flood of publishes without confirms does not starve a consumer on the same connection")
    func floodDoesNotStarveConsumer() async throws {
        let flood = Broker.unique("flood")
        let ready = Broker.unique("ready")
        try await withChannel(queues: [flood, ready]) { connection, channel in
            try await channel.declareQueue(flood, durable: false, arguments: ["x-max-length": 1000])
            try await channel.declareQueue(ready, durable: false)
            try await channel.enableConfirms()
            for index in 0..<100 { try await channel.publish(Data("\(index)".utf8), routingKey: ready) }
            let publisher = try await connection.openChannel()
            let stop = Atomic<Bool>(false)
            async let flooding: Void = {
                while !stop.load(ordering: .relaxed) {
                    try await publisher.publish(Data("noise".utf8), routingKey: flood)
                }
            }()
            let consumerChannel = try await connection.openChannel()
            // Starved, the consumer would get nothing until the flood stops; here it must get
            // everything while the flood goes on.
            let received = try await consumerChannel.consume(queue: ready, noAck: true).first(100, within: .seconds(10))
            stop.store(true, ordering: .relaxed)
            try await flooding
            #expect(received.count == 100)
        }
    }

    @Test("after a reconnect, a consumer whose queue is gone ends; its channel's other consumer carries on")
    func partialConsumerRestore() async throws {
        var configuration = try Broker.configuration()
        configuration.recovery.initialBackoff = .milliseconds(50)
        let connection = try await AMQPConnection.connect(configuration)
        let channel = try await connection.openChannel()
        let temporary = try await channel.declareQueue("", durable: false, exclusive: true)
        let lasting = Broker.unique("lasting")
        try await channel.declareQueue(lasting)
        let endedWith = Mutex<AMQPError??>(nil)
        _ = try await channel.consume(queue: temporary.name, noAck: true) { event in
            if case .ended(let error) = event { endedWith.withLock { $0 = .some(error) } }
        }
        let lastingConsumer = try await channel.consume(queue: lasting)
        try await BrokerControl.closeConnections(named: configuration.connectionName)
        try await waitUntil(within: .seconds(10)) { connection.recoveries == 1 && endedWith.withLock { $0 } != nil }
        guard case .channelClosed(404, _)?? = endedWith.withLock({ $0 }) else {
            Issue.record("expected the server-named queue's consumer to end with 404, got \(String(describing: endedWith.withLock { $0 }))")
            return
        }
        let publisher = try await connection.openChannel()
        try await publisher.publish(Data("still here".utf8), routingKey: lasting)
        let delivery = try #require(try await lastingConsumer.first(1).first)
        #expect(delivery.body == Data("still here".utf8))
        try delivery.ack()
        try await publisher.deleteQueue(lasting)
        await connection.close()
    }
}
