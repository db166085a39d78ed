import Foundation
import Synchronization
import Testing
import WarrenTestSupport
import WarrenAMQP

@Suite("Publishing and consuming", .timeLimit(.minutes(2)))
struct PublishConsumeTests {
    @Test("a published message reaches a consumer with its properties and headers intact")
    func roundTrip() async throws {
        let queue = Broker.unique("roundtrip")
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            let headers: AMQPTable = [
                "string": "text ünïcode", "int": 42, "negative": .int(-7), "big": .int(Int64.max), "bool": true,
                "double": 2.5, "nested": .table(["inner": "value", "list": .array([1, "two", false])]),
                "array": .array([.string("a"), .int(1), .table(["k": "v"])]),
                "bytes": .bytes(Data([0, 1, 2, 255])), "void": .void,
                "timestamp": .timestamp(Date(timeIntervalSince1970: 1_700_000_000)),
            ]
            let properties = AMQPProperties(
                contentType: "application/json", contentEncoding: "identity", headers: headers,
                deliveryMode: .persistent, priority: 5, correlationID: "corr-1", replyTo: "reply-queue",
                expiration: "60000", messageID: "msg-1", timestamp: Date(timeIntervalSince1970: 1_700_000_123),
                type: "users.get", userID: "guest", appID: "warren-tests")
            let body = Data("{\"hello\":\"world\"}".utf8)
            try await channel.publish(body, routingKey: queue, properties: properties)
            let consumer = try await channel.consume(queue: queue)
            let received = try await consumer.first(1)
            let delivery = try #require(received.first)
            #expect(delivery.body == body)
            #expect(delivery.properties == properties)
            #expect(delivery.routingKey == queue)
            #expect(delivery.exchange == "")
            #expect(!delivery.redelivered)
            try delivery.ack()
        }
    }

    @Test("100,000 persistent messages confirmed from 8 concurrent tasks are all consumed once")
    func manyConfirmedMessages() async throws {
        let queue = Broker.unique("bulk")
        let total = 100_000
        let tasks = 8
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue)
            try await channel.enableConfirms()
            let properties = AMQPProperties(deliveryMode: .persistent)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<tasks {
                    group.addTask {
                        // Each task keeps a window of publishes in flight, like a busy service would.
                        try await withThrowingTaskGroup(of: Void.self) { window in
                            var inFlight = 0
                            for index in stride(from: task, to: total, by: tasks) {
                                if inFlight == 64 {
                                    try await window.next()
                                    inFlight -= 1
                                }
                                window.addTask {
                                    try await channel.publish(Data("\(index)".utf8), routingKey: queue, properties: properties)
                                }
                                inFlight += 1
                            }
                            try await window.waitForAll()
                        }
                    }
                }
                try await group.waitForAll()
            }
            let info = try await channel.inspectQueue(queue)
            #expect(info.messageCount == UInt32(total))

            let consumerChannel = try await connection.openChannel()
            try await consumerChannel.setPrefetch(500)
            let consumer = try await consumerChannel.consume(queue: queue)
            var seen = [Bool](repeating: false, count: total)
            var duplicates = 0
            var count = 0
            for try await delivery in consumer {
                let index = try #require(Int(String(decoding: delivery.body, as: UTF8.self)))
                if seen[index] { duplicates += 1 }
                seen[index] = true
                try delivery.ack()
                count += 1
                if count == total { break }
            }
            #expect(duplicates == 0)
            #expect(seen.allSatisfy { $0 })
        }
    }

    @Test("publish(…, confirmed:) reports every outcome once, returns as failures, with no task per message")
    func confirmedCallbacks() async throws {
        let queue = Broker.unique("callbacks")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            #expect(throws: AMQPError.self, "a channel without confirms cannot report them") {
                try channel.publish(Data("x".utf8), routingKey: queue) { _ in }
            }
            try await channel.enableConfirms()
            let total = 1_000
            let lostKey = Broker.unique("nowhere")
            let (outcomes, sink) = AsyncStream<(Int, Bool)>.makeStream()
            for index in 0..<total {
                // Every 100th goes nowhere: a mandatory message no queue takes fails, the rest do not.
                let routingKey = index % 100 == 99 ? lostKey : queue
                try channel.publish(Data("\(index)".utf8), routingKey: routingKey, mandatory: true) { result in
                    sink.yield((index, (try? result.get()) != nil))
                }
            }
            var seen: [(Int, Bool)] = []
            for await outcome in outcomes {
                seen.append(outcome)
                if seen.count == total { break }
            }
            // Confirms need not come in publish order: the broker acks an unroutable message at once.
            #expect(seen.map(\.0).sorted() == Array(0..<total))
            #expect(seen.filter { !$0.1 }.map(\.0).sorted() == Array(stride(from: 99, to: total, by: 100)))
            #expect(try await channel.inspectQueue(queue).messageCount == UInt32(total - total / 100))
        }
    }

    @Test("a mandatory publish that no queue takes fails with the exchange and routing key")
    func mandatoryReturned() async throws {
        try await withChannel { _, channel in
            try await channel.enableConfirms()
            let routingKey = Broker.unique("nowhere")
            await #expect(throws: AMQPError.returned(exchange: "amq.direct", routingKey: routingKey, code: 312, text: "NO_ROUTE")) {
                try await channel.publish(Data("lost?".utf8), exchange: "amq.direct", routingKey: routingKey, mandatory: true)
            }
            // A routable mandatory publish on the same channel still succeeds.
            let queue = Broker.unique("routable")
            try await channel.declareQueue(queue, durable: false, autoDelete: true)
            try await channel.publish(Data("kept".utf8), routingKey: queue, mandatory: true)
            #expect(try await channel.inspectQueue(queue).messageCount == 1)
            try await channel.deleteQueue(queue)
        }
    }

    @Test("a publish to a missing exchange fails with 404 and the same channel and connection keep working")
    func missingExchange() async throws {
        let queue = Broker.unique("after404")
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.enableConfirms()
            let exchange = Broker.unique("missing-exchange")
            let error = await #expect(throws: AMQPError.self) {
                try await channel.publish(Data("x".utf8), exchange: exchange, routingKey: "k")
            }
            guard case .channelClosed(let code, let text) = error else {
                Issue.record("expected channelClosed, got \(String(describing: error))")
                return
            }
            #expect(code == 404)
            #expect(text.contains(exchange))
            // The channel reopens (still in confirm mode) and the connection is fine.
            try await channel.declareQueue(queue, durable: false)
            try await channel.publish(Data("y".utf8), routingKey: queue)
            #expect(try await channel.inspectQueue(queue).messageCount == 1)
            #expect(connection.isConnected)
        }
    }

    @Test("a nacked message with requeue comes back marked redelivered")
    func nackRequeue() async throws {
        let queue = Broker.unique("nack")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            try await channel.publish(Data("again".utf8), routingKey: queue)
            let consumer = try await channel.consume(queue: queue)
            var iterator = consumer.makeAsyncIterator()
            let first = try #require(try await iterator.next())
            #expect(!first.redelivered)
            try first.nack(requeue: true)
            let second = try #require(try await iterator.next())
            #expect(second.redelivered)
            #expect(second.body == first.body)
            try second.ack()
        }
    }

    @Test("a rejected message without requeue goes to the dead-letter exchange")
    func rejectDeadLetters() async throws {
        let queue = Broker.unique("reject")
        let dead = Broker.unique("reject-dlq")
        try await withChannel(queues: [queue, dead]) { _, channel in
            try await channel.declareQueue(dead, durable: false)
            try await channel.declareQueue(queue, durable: false, arguments: [
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(dead),
            ])
            try await channel.publish(Data("poison".utf8), routingKey: queue)
            let delivery = try #require(try await channel.get(queue: queue))
            try delivery.reject()
            let deadLettered = try #require(try await pollGet(channel, queue: dead, within: .seconds(20)))
            #expect(deadLettered.body == Data("poison".utf8))
            #expect(deadLettered.properties.headers?["x-death"] != nil)
            try deadLettered.ack()
        }
    }

    /// Properties that fill a content header frame to the last byte this side may write.
    static func frameFillingProperties(on channel: AMQPChannel) throws -> AMQPProperties {
        var properties = AMQPProperties(headers: ["x-fill": .string("")])
        let fill = channel.maxContentHeaderSize - (try properties.contentHeaderSize)
        properties.headers = ["x-fill": .string(String(repeating: "f", count: fill))]
        #expect(try properties.contentHeaderSize == channel.maxContentHeaderSize)
        return properties
    }

    @Test("a message that fills a frame is still read after the broker adds x-death to it")
    func frameFillingDeadLetter() async throws {
        let queue = Broker.unique("fill")
        let dead = Broker.unique("fill-dlq")
        try await withChannel(queues: [queue, dead]) { connection, channel in
            try await channel.declareQueue(dead, durable: false)
            try await channel.declareQueue(queue, durable: false, arguments: [
                "x-dead-letter-exchange": "", "x-dead-letter-routing-key": .string(dead),
            ])
            let properties = try Self.frameFillingProperties(on: channel)
            try await channel.enableConfirms()
            try await channel.publish(Data("full".utf8), routingKey: queue, properties: properties)
            let delivery = try #require(try await channel.get(queue: queue))
            try delivery.reject()
            // The copy carries x-death besides: a frame longer than the agreed frame_max.
            let deadLettered = try #require(try await pollGet(channel, queue: dead, within: .seconds(20)))
            #expect(deadLettered.properties.headers?["x-fill"] == properties.headers?["x-fill"])
            #expect(deadLettered.properties.headers?["x-death"] != nil)
            try deadLettered.ack()
            #expect(connection.isConnected)
            #expect(try await channel.inspectQueue(dead).messageCount == 0)
        }
    }

    @Test("a message that fills a frame is still read when a quorum queue redelivers it with x-delivery-count")
    func frameFillingRedelivery() async throws {
        let queue = Broker.unique("fill-quorum")
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue, arguments: ["x-queue-type": "quorum"])
            let properties = try Self.frameFillingProperties(on: channel)
            try await channel.enableConfirms()
            try await channel.publish(Data("again".utf8), routingKey: queue, properties: properties)
            let consumer = try await channel.consume(queue: queue)
            var iterator = consumer.makeAsyncIterator()
            let first = try #require(try await iterator.next())
            try first.nack(requeue: true)
            let second = try #require(try await iterator.next())
            #expect(second.redelivered)
            #expect(second.properties.headers?["x-delivery-count"] != nil)
            #expect(second.properties.headers?["x-fill"] == properties.headers?["x-fill"])
            try second.ack()
            #expect(connection.isConnected)
        }
    }

    @Test("bodies longer than a frame arrive whole, cut into frames the broker accepts", arguments: [1, 2, 3])
    func bodiesOverFrames(frames: Int) async throws {
        let queue = Broker.unique("long-body")
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            var generator = SplitMix(seed: UInt64(frames))
            // Around each multiple of the body room of a frame (frame_max - 8): one byte under, at, over.
            let room = channel.maxContentHeaderSize
            let sizes = [frames * room - 1, frames * room, frames * room + 1]
            for size in sizes {
                let body = Data((0..<size).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
                try await channel.publish(body, routingKey: queue)
                let delivery = try #require(try await pollGet(channel, queue: queue, within: .seconds(10)))
                #expect(delivery.body == body, "a body of \(size) bytes")
                try delivery.ack()
            }
            #expect(connection.isConnected)
        }
    }

    @Test("a consumer with prefetch N never holds more than N unacked messages")
    func prefetchBound() async throws {
        let queue = Broker.unique("prefetch")
        let prefetch = 5
        try await withChannel(queues: [queue]) { connection, channel in
            try await channel.declareQueue(queue, durable: false)
            for index in 0..<50 { try await channel.publish(Data("\(index)".utf8), routingKey: queue) }
            let consumerChannel = try await connection.openChannel()
            try await consumerChannel.setPrefetch(UInt16(prefetch))
            let consumer = try await consumerChannel.consume(queue: queue)
            var held: [AMQPDelivery] = []
            var iterator = consumer.makeAsyncIterator()
            var received = 0
            while received < 50 {
                // Take what has arrived; with prefetch N the broker stops at N unacked.
                let delivery = try #require(try await iterator.next())
                held.append(delivery)
                received += 1
                if held.count == prefetch {
                    try await Task.sleep(for: .milliseconds(100))
                    let unacked = try await channel.inspectQueue(queue).messageCount
                    #expect(Int(unacked) == 50 - received)
                    for message in held { try message.ack() }
                    held.removeAll()
                }
            }
            // Nothing beyond the prefetch window ever arrived early.
            #expect(received == 50)
        }
    }

    @Test("basic.get browses a queue; an empty queue gives nil")
    func basicGet() async throws {
        let queue = Broker.unique("get")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            #expect(try await channel.get(queue: queue) == nil)
            try await channel.publish(Data("one".utf8), routingKey: queue)
            try await channel.publish(Data("two".utf8), routingKey: queue)
            let first = try #require(try await channel.get(queue: queue))
            #expect(first.body == Data("one".utf8))
            #expect(first.messageCount == 1)
            try first.nack(requeue: true)
            // Requeued at the head of the queue: the next get returns it again, marked redelivered.
            let again = try #require(try await pollGet(channel, queue: queue))
            #expect(again.body == Data("one".utf8))
            #expect(again.redelivered)
        }
    }

    @Test("direct reply-to: a request carries amq.rabbitmq.reply-to and the reply comes back")
    func directReplyTo() async throws {
        let queue = Broker.unique("rpc")
        try await withChannel(queues: [queue]) { connection, client in
            let server = try await connection.openChannel()
            try await server.declareQueue(queue, durable: false)
            let replies = try await client.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            let requests = try await server.consume(queue: queue)
            try await client.publish(
                Data("ping".utf8), routingKey: queue,
                properties: AMQPProperties(correlationID: "c-1", replyTo: "amq.rabbitmq.reply-to"))
            let request = try #require(try await requests.first(1).first)
            let replyTo = try #require(request.properties.replyTo)
            #expect(replyTo.hasPrefix("amq.rabbitmq.reply-to."))
            try await server.publish(Data("pong".utf8), routingKey: replyTo, properties: AMQPProperties(correlationID: "c-1"))
            try request.ack()
            let reply = try #require(try await replies.first(1).first)
            #expect(reply.body == Data("pong".utf8))
            #expect(reply.properties.correlationID == "c-1")
            #expect(throws: AMQPError.self) { try reply.ack() }
        }
    }
}

extension PublishConsumeTests {
    @Test("declares interleaved with bursts of publishes are not held back by batched writes")
    func declaresBetweenPublishBursts() async throws {
        let queue = Broker.unique("burst")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            var latencies: [Duration] = []
            for round in 0..<20 {
                // Fire a burst without waiting, then a declare that needs the broker's reply.
                for index in 0..<50 { try await channel.publish(Data("\(round)-\(index)".utf8), routingKey: queue) }
                let started = ContinuousClock.now
                let info = try await channel.inspectQueue(queue)
                latencies.append(started.duration(to: .now))
                #expect(info.name == queue)
            }
            // A declare stuck behind a corked socket waits 200 ms for the kernel to flush it.
            let median = latencies.sorted()[latencies.count / 2]
            #expect(median < .milliseconds(100))
            try await channel.purgeQueue(queue)
        }
    }

    @Test("a consumer on the I/O thread gets every delivery and then .ended when cancelled")
    func ioThreadConsumer() async throws {
        let queue = Broker.unique("handler")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            let log = EventLog()
            let tag = try await channel.consume(queue: queue, noAck: true) { event in
                switch event {
                case .delivery(let delivery): log.append(String(decoding: delivery.body, as: UTF8.self))
                case .interrupted(let error): log.append("interrupted \(error)")
                case .ended(let error): log.append("ended \(error.map { "\($0)" } ?? "cleanly")")
                }
            }
            for index in 0..<100 { try await channel.publish(Data("\(index)".utf8), routingKey: queue) }
            try await waitUntil { log.count == 100 }
            await channel.cancelConsumer(tag: tag)
            try await waitUntil { log.count == 101 }
            #expect(log.entries == (0..<100).map { "\($0)" } + ["ended cleanly"])
        }
    }
}

/// Thread-safe list written from the I/O thread.
final class EventLog: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ entry: String) { storage.withLock { $0.append(entry) } }
    var entries: [String] { storage.withLock { $0 } }
    var count: Int { storage.withLock { $0.count } }
}


