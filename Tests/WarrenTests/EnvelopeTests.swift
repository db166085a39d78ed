import Foundation
import Testing
@testable import Warren
@testable import WarrenAMQP

@Suite("Envelope and codec")
struct EnvelopeTests {
    private func delivery(_ properties: AMQPProperties) -> AMQPDelivery {
        AMQPDelivery(
            body: Data(), properties: properties, exchange: "", routingKey: "users.rpc", deliveryTag: 1, redelivered: false,
            consumerTag: nil, acknowledger: nil)
    }

    @Test("a plain client's request (type, reply_to, correlation_id only) gets defaults for the rest")
    func plainRequest() {
        let envelope = Envelope(delivery: delivery(AMQPProperties(correlationID: "c-1", replyTo: "amq.rabbitmq.reply-to", type: "users.get")))
        #expect(envelope.correlationID == "c-1")
        #expect(envelope.type == "users.get")
        #expect(envelope.replyTo == "amq.rabbitmq.reply-to")
        #expect(envelope.deadline == nil)
        #expect(!envelope.messageID.isEmpty)
    }

    @Test("the flow's correlation id in x-correlation-id wins over the call's AMQP correlation id")
    func flowCorrelation() {
        let envelope = Envelope(delivery: delivery(AMQPProperties(headers: ["x-correlation-id": "flow-9"], correlationID: "call-1")))
        #expect(envelope.correlationID == "flow-9")
    }

    @Test("a deadline sent as an integer or as digits is read", arguments: [AMQPFieldValue.int(1_800_000_000_000), .string("1800000000000")])
    func deadline(value: AMQPFieldValue) {
        let envelope = Envelope(delivery: delivery(AMQPProperties(headers: ["x-deadline": value])))
        #expect(envelope.deadline == Date(timeIntervalSince1970: 1_800_000_000))
    }

    @Test("a caused envelope keeps the correlation and names its cause")
    func causation() {
        let cause = Envelope(messageID: "m-1", correlationID: "flow-1", type: "orders.create", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        let effect = cause.caused(type: "order.created")
        #expect(effect.correlationID == "flow-1")
        #expect(effect.causationID == "m-1")
        #expect(effect.traceparent == cause.traceparent)
        let headers = effect.properties().headers ?? [:]
        #expect(headers["x-causation-id"] == "m-1")
        #expect(headers["traceparent"] == .string(cause.traceparent!))
    }

    @Test("a UUID field takes either case and refuses anything else")
    func uuidCheck() throws {
        try Check.uuid("9f1c2a4e-0b7d-4c1e-8f3a-2d5e6b7c8a90", "id")
        try Check.uuid("9F1C2A4E-0B7D-4C1E-8F3A-2D5E6B7C8A90", "id")
        for bad in ["", "9f1c2a4e-0b7d-4c1e-8f3a-2d5e6b7c8a9", "9f1c2a4e-0b7d-4c1e-8f3a-2d5e6b7c8a9g", "9f1c2a4e00b7d-4c1e-8f3a-2d5e6b7c8a90", "9f1c2a4e-0b7d-4c1e-8f3a-2d5e6b7c8a90 "] {
            #expect(throws: ServiceError.self, "\(bad)") { try Check.uuid(bad, "id") }
        }
    }

    struct Order: Codable, Validatable {
        struct Item: Codable {
            var sku: String
            var quantity: Int
        }
        var items: [Item]
        func validate() throws(ServiceError) {
            try Check.count(items, "items", 1...100)
            for (index, item) in items.enumerated() { try Check.range(item.quantity, "items[\(index)].quantity", 1...1000) }
        }
    }

    @Test("decoding failures name the field", arguments: [
        (#"{"items":[{"sku":"a"}]}"#, "field 'items[0].quantity' is required"),
        (#"{"items":[{"sku":"a","quantity":"2"}]}"#, "field 'items[0].quantity' must be an integer"),
        (#"{"items":[]}"#, "field 'items' must have 1 to 100 items"),
        (#"{"items":[{"sku":"a","quantity":-1}]}"#, "field 'items[0].quantity' must be from 1 to 1000"),
        (#"[1,2]"#, "the body must be a JSON object"),
        (#"{"items":"#, "the body is not valid JSON"),
    ])
    func fieldErrors(body: String, message: String) {
        #expect(throws: ServiceError.invalid(message)) {
            _ = try WireJSON.decode(Order.self, from: Data(body.utf8))
        }
    }
}
