import Foundation
import Testing
import WarrenAMQP

@Suite("Publishing and consuming")
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
}
