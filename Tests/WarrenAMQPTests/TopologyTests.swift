import Foundation
import Testing
import WarrenTestSupport
import WarrenAMQP

@Suite("Declaring topology", .timeLimit(.minutes(1)))
struct TopologyTests {
    @Test("exchanges, queues and bindings route messages; unbinding stops them")
    func declareBindUnbind() async throws {
        let exchange = Broker.unique("events")
        let queue = Broker.unique("orders")
        try await withChannel(queues: [queue], exchanges: [exchange]) { _, channel in
            // Confirms, so that the queue has the message before its depth is read.
            try await channel.enableConfirms()
            try await channel.declareExchange(exchange, type: "topic", durable: false, autoDelete: false)
            try await channel.checkExchange(exchange)
            try await channel.declareQueue(queue, durable: false)
            try await channel.bindQueue(queue, exchange: exchange, routingKey: "order.*")
            try await channel.publish(Data("a".utf8), exchange: exchange, routingKey: "order.created")
            try await channel.publish(Data("b".utf8), exchange: exchange, routingKey: "user.created")
            #expect(try await channel.inspectQueue(queue).messageCount == 1)
            try await channel.unbindQueue(queue, exchange: exchange, routingKey: "order.*")
            try await channel.publish(Data("c".utf8), exchange: exchange, routingKey: "order.created")
            #expect(try await channel.inspectQueue(queue).messageCount == 1)
            #expect(try await channel.purgeQueue(queue) == 1)
            #expect(try await channel.inspectQueue(queue).messageCount == 0)
        }
    }

    @Test("inspecting a queue reports its message and consumer counts")
    func passiveDeclare() async throws {
        let queue = Broker.unique("counts")
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            for _ in 0..<3 { try await channel.publish(Data("m".utf8), routingKey: queue) }
            let consumerChannel = try await connection.openChannel()
            try await consumerChannel.setPrefetch(1)
            // Dropping a consumer sequence cancels the consumer, so keep it until the end.
            let consumer = try await consumerChannel.consume(queue: queue)
            try await Task.sleep(for: .milliseconds(100))
            let info = try await channel.inspectQueue(queue)
            #expect(info.name == queue)
            #expect(info.consumerCount == 1)
            #expect(info.messageCount == 2)  // one is out, unacked, with the consumer
            await consumer.cancel()
        }
    }

    @Test("inspecting a missing queue or exchange fails with 404 and the connection still works")
    func missingEntities() async throws {
        try await withChannel { connection, channel in
            let queue = Broker.unique("absent")
            await #expect {
                _ = try await channel.inspectQueue(queue)
            } throws: { error in
                guard case .channelClosed(404, let text) = error as? AMQPError else { return false }
                return text.contains(queue)
            }
            await #expect {
                try await channel.checkExchange(Broker.unique("absent-exchange"))
            } throws: { error in
                guard case .channelClosed(404, _) = error as? AMQPError else { return false }
                return true
            }
            let queueName = Broker.unique("present")
            try await channel.declareQueue(queueName, durable: false, autoDelete: true)
            #expect(connection.isConnected)
            try await channel.deleteQueue(queueName)
        }
    }

    @Test("re-declaring a queue with other arguments fails with 406 PRECONDITION_FAILED")
    func mismatchedDeclare() async throws {
        let queue = Broker.unique("mismatch")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false, arguments: ["x-message-ttl": 1000])
            await #expect {
                try await channel.declareQueue(queue, durable: false, arguments: ["x-message-ttl": 2000])
            } throws: { error in
                guard case .channelClosed(406, let text) = error as? AMQPError else { return false }
                return text.contains("PRECONDITION_FAILED")
            }
            // Same arguments again are fine on the reopened channel.
            try await channel.declareQueue(queue, durable: false, arguments: ["x-message-ttl": 1000])
        }
    }

    @Test("quorum queues with dead-lettering and message TTL can be declared and used")
    func quorumQueue() async throws {
        let queue = Broker.unique("quorum")
        let dead = Broker.unique("quorum-dlq")
        try await withChannel(queues: [queue, dead]) { _, channel in
            try await channel.declareQueue(dead, durable: true)
            try await channel.declareQueue(queue, durable: true, arguments: [
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": .string(dead),
                "x-message-ttl": 50,
            ])
            try await channel.enableConfirms()
            try await channel.publish(Data("expires".utf8), routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))
            let expired = try #require(try await pollGet(channel, queue: dead))
            #expect(expired.body == Data("expires".utf8))
            try expired.ack()
        }
    }

    @Test("deleting a queue under a consumer ends its sequence with consumerCancelled")
    func serverCancel() async throws {
        let queue = Broker.unique("cancelled")
        try await withChannel { connection, channel in
            try await channel.declareQueue(queue, durable: false)
            let consumerChannel = try await connection.openChannel()
            let consumer = try await consumerChannel.consume(queue: queue)
            let ending = Task { () -> (any Error)? in
                do {
                    for try await _ in consumer {}
                    return nil
                } catch {
                    return error
                }
            }
            try await channel.deleteQueue(queue)
            let error = await ending.value
            #expect(error as? AMQPError == .consumerCancelled(queue: queue))
        }
    }

    @Test("a consumer cancelled by the client ends its sequence without error")
    func clientCancel() async throws {
        let queue = Broker.unique("client-cancel")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            let consumer = try await channel.consume(queue: queue)
            let ending = Task { () -> Bool in
                do {
                    for try await _ in consumer {}
                    return true
                } catch {
                    return false
                }
            }
            await consumer.cancel()
            #expect(await ending.value)
            try await Task.sleep(for: .milliseconds(50))
            #expect(try await channel.inspectQueue(queue).consumerCount == 0)
        }
    }

    @Test("declared topology is declared again after the broker drops the connection")
    func topologyRecovered() async throws {
        var configuration = try Broker.configuration()
        configuration.recovery.initialBackoff = .milliseconds(50)
        let connection = try await AMQPConnection.connect(configuration)
        let channel = try await connection.openChannel()
        let exclusive = Broker.unique("exclusive")
        let exchange = Broker.unique("recovered-exchange")
        try await channel.declareExchange(exchange, type: "fanout", durable: false, autoDelete: true)
        try await channel.declareQueue(exclusive, durable: false, exclusive: true)
        try await channel.bindQueue(exclusive, exchange: exchange, routingKey: "")
        try await BrokerControl.closeConnections(named: configuration.connectionName)
        // The exclusive queue died with the old connection; recovery brings it back, bound.
        try await channel.publish(Data("after".utf8), exchange: exchange, routingKey: "")
        let delivery = try #require(try await pollGet(channel, queue: exclusive))
        #expect(delivery.body == Data("after".utf8))
        try delivery.ack()
        await connection.close()
    }
}
