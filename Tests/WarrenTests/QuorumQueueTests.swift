import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("Quorum queues")
struct QuorumQueueTests {
    @Test("AMQP_QUEUE_TYPE and AMQP_DELIVERY_LIMIT: quorum with 20 by default; a bad value names the setting", arguments: [
        ([:], "quorum (x-delivery-limit 20)"),
        (["AMQP_QUEUE_TYPE": "Classic"], "classic"),
        (["AMQP_QUEUE_TYPE": "quorum", "AMQP_DELIVERY_LIMIT": "5"], "quorum (x-delivery-limit 5)"),
        (["AMQP_QUEUE_TYPE": ""], "quorum (x-delivery-limit 20)"),
        (["AMQP_QUEUE_TYPE": "stream"], "AMQP_QUEUE_TYPE='stream'"),
        (["AMQP_DELIVERY_LIMIT": "0"], "AMQP_DELIVERY_LIMIT='0'"),
        (["AMQP_DELIVERY_LIMIT": "1e3"], "AMQP_DELIVERY_LIMIT='1e3'"),
        (["AMQP_DELIVERY_LIMIT": "99999999999999999999"], "AMQP_DELIVERY_LIMIT="),
    ] as [([String: String], String)])
    func settings(environment: [String: String], expected: String) {
        do {
            let type = try DurableQueueType.from(environment: environment)
            #expect(type.description == expected)
        } catch {
            #expect(error.message.contains(expected), "\(error.message)")
        }
    }

    @Test("arguments: consumed queues get the delivery limit, dead-lettering ones at-least-once; classic adds nothing")
    func arguments() {
        let quorum = DurableQueueType(kind: .quorum, deliveryLimit: 7)
        #expect(quorum.arguments(consumed: true, deadLettering: true) == [
            "x-queue-type": "quorum", "x-delivery-limit": .int(7), "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
        ])
        #expect(quorum.arguments(consumed: false, deadLettering: false) == ["x-queue-type": "quorum"])
        #expect(DurableQueueType.classic.arguments(consumed: true, deadLettering: true) == [:])
    }

    @Test("a message delivered past x-delivery-limit is dead-lettered by the broker itself")
    func deliveryLimit() async throws {
        let queue = Broker.unique("quorum")
        try await withChannel(queues: [queue, "\(queue).dlq"]) { _, channel in
            try await DeadLettering.declare(queue, deadLetterQueue: "\(queue).dlq", type: .init(kind: .quorum, deliveryLimit: 2), on: channel)
            try await channel.enableConfirms()
            try await channel.publish(Data("poison".utf8), routingKey: queue, properties: AMQPProperties(messageID: "poison-1"))
            var deliveries = 0
            // A consumer that dies on the message returns it each time (here: reject with requeue).
            while let delivery = try await pollGet(channel, queue: queue, within: .seconds(2)) {
                deliveries += 1
                try delivery.reject(requeue: true)
                if deliveries > 10 { break }
            }
            // x-delivery-limit counts returns: the first delivery and two more, then the broker parks it.
            #expect(deliveries == 3)
            let parked = try #require(try await pollGet(channel, queue: "\(queue).dlq"))
            #expect(parked.properties.messageID == "poison-1")
            let death = parked.properties.headers?["x-death"]
            #expect("\(String(describing: death))".contains("delivery_limit"), "\(String(describing: death))")
            try parked.ack()
        }
    }

    @Test("a classic queue of that name left by an older Warren: the error names the queue, the argument and the way out")
    func classicQueueLeftBehind() async throws {
        let queue = Broker.unique("classic")
        try await withChannel(queues: [queue, "\(queue).dlq"]) { connection, channel in
            // As this Warren's predecessor declared them: classic.
            try await channel.declareQueue("\(queue).dlq")
            try await channel.declareQueue(queue, arguments: DeadLettering.arguments(to: "\(queue).dlq"))
            let declaring = try await connection.openChannel()
            do {
                try await DeadLettering.declare(queue, deadLetterQueue: "\(queue).dlq", on: declaring)
                Issue.record("a quorum declare over a classic queue succeeded")
            } catch let error as QueueArgumentsMismatch {
                #expect(error.queue == "\(queue).dlq")  // declared first
                #expect(error.argument == "x-queue-type")
                #expect(error.description.contains("delete_queue \(queue).dlq"))
                #expect(error.description.contains("AMQP_QUEUE_TYPE=classic"))
            }
            // The classic setting declares what was there, and works on it.
            try await DeadLettering.declare(queue, deadLetterQueue: "\(queue).dlq", type: .classic, on: declaring)
        }
    }
}
