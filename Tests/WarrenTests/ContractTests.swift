import Foundation
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP

/// Every message Warren emits validates against its schema in schemas/, checked by an outside
/// validator (check-jsonschema), as an outside client would read the contract.
@Suite("Contracts", .timeLimit(.minutes(1)))
struct ContractTests {
    @Test("requests, replies, error replies, events and dead letters match schemas/warren")
    func emittedMessagesMatchSchemas() async throws {
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        var samples: [(schema: String, json: Any)] = []

        // A request as the RPC client sends it, caught by a stand-in service.
        let service = "t\(UUID().uuidString.prefix(8).lowercased())"
        try await channel.declareQueue("\(service).rpc", durable: false, autoDelete: true)
        let requests = try await channel.consume(queue: "\(service).rpc", noAck: true)
        let client = try await RPCClient.start(connection: connection)
        // Keeps the calls' deadlines for this scope (cancelled at its end).
        async let _ = client.run()
        let pending = Task { try? await client.call("\(service).echo", body: Data(#"{"text":"x"}"#.utf8), timeout: .milliseconds(500)) }
        let request = try #require(try await requests.first(1).first)
        samples.append(("warren/request-headers.schema.json", amqpJSON(request.properties)))
        await requests.cancel()
        _ = await pending.value
        await client.close()

        // An error reply and an ok reply from a real responder.
        let replies = try await withRPC { testService, _, rpcConnection in
            let plain = try await rpcConnection.openChannel()
            let replies = try await plain.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            for (id, type) in [("e", "\(testService.name).nope"), ("o", "\(testService.name).echo")] {
                try await plain.publish(
                    Data(#"{"text":"x"}"#.utf8), routingKey: "\(testService.name).rpc",
                    properties: AMQPProperties(correlationID: id, replyTo: "amq.rabbitmq.reply-to", type: type))
            }
            // An invalid command without reply_to, parked with the reason.
            try await plain.publish(
                Data(#"{"text":1}"#.utf8), routingKey: "\(testService.name).rpc", properties: AMQPProperties(type: "\(testService.name).echo"))
            let browser = try await rpcConnection.openChannel()
            let parked = try #require(try await pollGet(browser, queue: "\(testService.name).rpc.dlq"))
            samples.append(("warren/dead-letter-headers.schema.json", amqpJSON(parked.properties)))
            return try await replies.first(2)
        }
        #expect(replies.count == 2)
        for reply in replies {
            samples.append(("warren/reply-headers.schema.json", amqpJSON(reply.properties)))
            if reply.properties.correlationID == "e" {
                samples.append(("warren/error-reply.schema.json", try JSONSerialization.jsonObject(with: reply.body)))
            }
        }

        // An event as the publisher sends it.
        let events = Broker.unique("contract-events")
        try await channel.declareQueue(events, durable: false, autoDelete: true)
        try await channel.bindQueue(events, exchange: EventPublisher.exchange, routingKey: "\(service).thing.happened")
        let publisher = try await EventPublisher.start(connection: connection)
        try await publisher.publish("\(service).thing.happened", ["n": 1], aggregateID: "a-1", causedBy: Envelope(type: "\(service).do"))
        let event = try #require(try await pollGet(channel, queue: events))
        samples.append(("warren/event-headers.schema.json", amqpJSON(event.properties)))
        try await channel.deleteQueue(events)
        await connection.close()

        #expect(samples.count == 6)
        for sample in samples {
            #expect(try validate(sample.json, against: sample.schema), "\(sample.schema) rejected \(sample.json)")
        }
        // The check can fail: an error reply with a code outside the contract is rejected.
        #expect(try !validate(["error": ["code": "oops", "message": "x"]], against: "warren/error-reply.schema.json"))
    }

    /// The AMQP properties as a JSON object with AMQP's names, the form the header schemas describe.
    private func amqpJSON(_ properties: AMQPProperties) -> [String: Any] {
        var object: [String: Any] = [:]
        object["content_type"] = properties.contentType
        object["correlation_id"] = properties.correlationID
        object["reply_to"] = properties.replyTo
        object["message_id"] = properties.messageID
        object["type"] = properties.type
        object["expiration"] = properties.expiration
        object["app_id"] = properties.appID
        object["delivery_mode"] = properties.deliveryMode.map { Int($0.rawValue) }
        object["headers"] = (properties.headers ?? [:]).mapValues(json)
        return object
    }

    private func json(_ value: AMQPFieldValue) -> Any {
        switch value {
        case .bool(let bool): bool
        case .int(let int): int
        case .double(let double): double
        case .string(let string): string
        case .bytes(let data): data.base64EncodedString()
        case .timestamp(let date): Int(date.timeIntervalSince1970)
        case .decimal(_, let value): value
        case .array(let values): values.map(json)
        case .table(let table): table.mapValues(json)
        case .void: NSNull()
        }
    }

    private func validate(_ json: Any, against schema: String) throws -> Bool {
        try Schemas.problems([json], against: schema) == nil
    }
}
