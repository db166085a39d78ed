import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// The issue's events, fed to the real order and payment services: each used to kill a process
/// (and kill it again on every redelivery) or to charge what was never ordered.
@Suite("Hostile events to the real services", .serialized, .timeLimit(.minutes(3)))
struct HostileEventServiceTests {
    @Test("order.confirmed (not one payments subscribes to) straight into payments.events is parked, not charged; payment.failed with x-attempts = Int64.max is parked, the order service lives; a real order still goes through")
    func hostileEvents() async throws {
        try await withSystem { system in
            let channel = try await system.connection.openChannel()
            try await channel.enableConfirms()
            let strangerOrder = UUID().uuidString.lowercased()
            let body = try JSONSerialization.data(withJSONObject: ["id": strangerOrder, "userId": UUID().uuidString.lowercased(), "totalCents": 100])
            try await channel.publish(
                body, routingKey: "payments.events",
                properties: AMQPProperties(contentType: "application/json", messageID: "stranger", type: "order.confirmed"))
            // totalCents no 64-bit integer holds, as the right type on the exchange: invalid, parked.
            try await channel.publish(
                Data(#"{"id":"\#(UUID().uuidString.lowercased())","userId":"u","totalCents":1e300}"#.utf8), exchange: EventPublisher.exchange,
                routingKey: "order.created", properties: AMQPProperties(contentType: "application/json", messageID: "huge-total", type: "order.created"))
            try await channel.publish(
                Data(#"{"orderId":"\#(UUID().uuidString.lowercased())","reason":"declined"}"#.utf8), exchange: EventPublisher.exchange,
                routingKey: "payment.failed",
                properties: AMQPProperties(
                    contentType: "application/json", headers: [WireHeader.attempts: .int(Int64.max)], messageID: "max-attempts", type: "payment.failed"))

            var parked: [String: String] = [:]
            let deadline = ContinuousClock.now + .seconds(20)
            while parked.count < 3, ContinuousClock.now < deadline {
                for queue in ["payments.events.dlq", "orders.events.dlq"] {
                    if let message = try await pollGet(channel, queue: queue, within: .milliseconds(200)) {
                        parked[message.properties.messageID ?? "-"] = message.properties.headers?[WireHeader.error]?.stringValue ?? ""
                        try message.ack()
                    }
                }
            }
            #expect(parked["stranger"]?.contains("'order.confirmed'") == true, "\(parked)")
            #expect(parked["huge-total"]?.contains("'totalCents'") == true, "\(parked)")
            #expect(parked["max-attempts"]?.contains("unknown order") == true, "\(parked)")
            let payment = try await system.call("payments.get", ["orderId": strangerOrder])
            #expect(payment.errorCode == "not_found")
            #expect(system.process("order-service")?.isRunning == true)
            #expect(system.process("payment-service")?.isRunning == true)

            // Both still serve: an order is charged and confirmed.
            let userID = try await newUser(system)

            // Numbers in requests that no 64-bit integer holds: `invalid`, naming the field.
            let requests: [(String, String, String)] = [
                ("orders.create", #"{"userId":"\#(userID)","items":[{"sku":"a","quantity":1e300,"unitPriceCents":1}]}"#, "items[0].quantity"),
                ("orders.create", #"{"userId":"\#(userID)","items":[{"sku":"a","quantity":1,"unitPriceCents":9223372036854775808}]}"#, "items[0].unitPriceCents"),
                ("orders.create", #"{"userId":"\#(userID)","items":[{"sku":"a","quantity":1.5,"unitPriceCents":1}]}"#, "items[0].quantity"),
                ("orders.create", #"{"userId":"\#(userID)","items":[{"sku":"a","quantity":-1,"unitPriceCents":1}]}"#, "items[0].quantity"),
                ("orders.list", #"{"userId":"\#(userID)","limit":-9223372036854775809}"#, "limit"),
                ("users.list", #"{"limit":1e300}"#, "limit"),
            ]
            for (operation, body, field) in requests {
                let reply = try await system.callRaw(operation, Data(body.utf8))
                #expect(reply.errorCode == "invalid", "\(operation) \(body): \(reply.json)")
                #expect(reply.errorMessage.contains("'\(field)'"), "\(operation) \(body): \(reply.errorMessage)")
            }

            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let orderID = try #require(created.string("id"))
            let confirmed = try await system.eventually("orders.get", ["id": orderID]) { $0.string("status") == "confirmed" }
            #expect(confirmed.string("status") == "confirmed")
        }
    }
}
