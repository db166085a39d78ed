import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// A cancelled order is never left charged: the payment service takes `order.cancelled` too,
/// and either stores a `cancelled` payment before any charge or refunds the one it made.
extension SagaTests {
    @Test("order.cancelled reaches the payment service before order.created: the order is never charged, however often either arrives", arguments: StorageBackend.allCases)
    func cancelledBeforeCharge(backend: StorageBackend) async throws {
        try await withSystem(["user-service", "order-service"], backend: backend) { system in
            let userID = try await newUser(system)
            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "book", "quantity": 1, "unitPriceCents": 100]]])
            let orderID = try #require(created.string("id"))
            let cancelled = try await system.call("orders.cancel", ["id": orderID])
            #expect(cancelled.string("status") == "cancelled")
            let placed = try #require(try await system.tap.wait(for: "order.created", aggregateID: orderID).first)
            let cancellation = try #require(try await system.tap.wait(for: "order.cancelled", aggregateID: orderID).first)

            // The payment service had no queue yet when they were published: they reach it in the
            // other order (as a retried order.created would), each twice (own id, then a new one).
            try await system.launch("payment-service")
            try await system.republish(cancellation, to: "payments.events")
            try await system.tap.wait(for: "payment.cancelled", aggregateID: orderID)
            try await system.republish(placed, to: "payments.events")
            try await drained("payments.events", system)

            let payment = try await system.call("payments.get", ["orderId": orderID])
            #expect(payment.string("status") == "cancelled", "\(payment.json)")
            #expect(system.tap.events(ofType: "payment.cancelled").count == 1)
            #expect(system.tap.events(ofType: "payment.succeeded").isEmpty)
            #expect(system.tap.events(ofType: "payment.failed").isEmpty)
            #expect(system.tap.events(ofType: "payment.refunded").isEmpty)
            #expect(try await system.call("orders.get", ["id": orderID]).string("status") == "cancelled")
        }
    }

    @Test("cancelled while the payment service is down, charged when it is back: refunded once, even when order.cancelled comes twice; the order stays cancelled", arguments: StorageBackend.allCases)
    func cancelledWhilePaymentPending(backend: StorageBackend) async throws {
        try await withSystem(System.allServices + ["event-store"], backend: backend) { system in
            let (orderID, orderFlow, cancelFlow) = try await chargedAfterCancel(system)
            let cancellation = try #require(system.tap.events(ofType: "order.cancelled").first { $0.aggregateID == orderID })

            try await system.republish(cancellation, to: "payments.events")
            try await drained("payments.events", system)
            #expect(system.tap.events(ofType: "payment.refunded").count == 1)
            #expect(system.tap.events(ofType: "payment.succeeded").count == 1)
            #expect(try await system.call("payments.get", ["orderId": orderID]).string("status") == "refunded")
            #expect(try await system.call("orders.get", ["id": orderID]).string("status") == "cancelled")
            // The refund is on the cancellation's flow, caused by its order.cancelled.
            let refund = try #require(system.tap.events(ofType: "payment.refunded").first)
            #expect(refund.correlationID == cancelFlow)
            #expect(try await system.recordedTypes(correlationID: cancelFlow, atLeast: 2) == ["order.cancelled", "payment.refunded"])
            // Both flows end: the order's (created, charged) is settled by the cancel request's.
            #expect(try await system.recordedTypes(correlationID: orderFlow, atLeast: 2) == ["order.created", "payment.succeeded"])
            for flow in [orderFlow, cancelFlow] {
                let shown = try await system.eventually("events.flow", ["correlationId": flow]) { $0.string("status") == "complete" }
                #expect(shown.string("status") == "complete", "\(shown.json)")
            }
        }
    }

    @Test("a forged order.cancelled for a confirmed order pays nothing back: parked with the order service's word")
    func forgedCancellation() async throws {
        try await withSystem(System.allServices) { system in
            let userID = try await newUser(system)
            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "book", "quantity": 1, "unitPriceCents": 100]]])
            let orderID = try #require(created.string("id"))
            try await system.tap.wait(for: "order.confirmed", aggregateID: orderID)
            let placed = try #require(system.tap.events(ofType: "order.created").first { $0.aggregateID == orderID })
            // Anyone who may publish can send an order.cancelled with the order's own body.
            let forged = EventTap.Seen(
                type: "order.cancelled", messageID: UUID().uuidString.lowercased(), correlationID: nil, aggregateID: orderID, body: placed.body)
            try await system.republish(forged, to: "payments.events")

            var parked: [AMQPDelivery] = []
            for _ in 0..<2 {
                parked.append(try #require(try await pollGet(system.channel, queue: "payments.events.dlq", within: .seconds(20))))
            }
            for delivery in parked {
                let reason = delivery.properties.headers?[WireHeader.error]?.stringValue ?? ""
                #expect(reason.contains("which the order service has as confirmed"), "\(reason)")
                try delivery.ack()
            }
            #expect(try await system.call("payments.get", ["orderId": orderID]).string("status") == "succeeded")
            #expect(try await system.call("orders.get", ["id": orderID]).string("status") == "confirmed")
            #expect(system.tap.events(ofType: "payment.refunded").isEmpty)
        }
    }

    @Test("replaying the order's events after the refund charges and refunds nothing more")
    func replayAfterRefund() async throws {
        try await withSystem { system in
            let (orderID, _, _) = try await chargedAfterCancel(system)
            let payment = try await system.call("payments.get", ["orderId": orderID])
            let events = system.tap.events.filter { $0.aggregateID == orderID && $0.type.hasPrefix("order.") }
            #expect(events.map(\.type) == ["order.created", "order.cancelled"])

            // As `warren replay --to payments` sends them: in store order, ids kept, x-replayed;
            // and once more under new ids.
            let publisher = try await system.connection.openChannel()
            try await publisher.enableConfirms()
            for fresh in [false, true] {
                for event in events {
                    try await publisher.publish(
                        event.body, routingKey: "payments.events",
                        properties: AMQPProperties(
                            contentType: "application/json", headers: [WireHeader.replayed: .bool(true)],
                            messageID: fresh ? UUID().uuidString.lowercased() : event.messageID, type: event.type))
                }
            }
            await publisher.close()
            try await drained("payments.events", system)

            let after = try await system.call("payments.get", ["orderId": orderID])
            #expect(after.string("status") == "refunded")
            #expect(after.string("id") == payment.string("id"))
            #expect(system.tap.events(ofType: "payment.succeeded").count == 1)
            #expect(system.tap.events(ofType: "payment.refunded").count == 1)
            #expect(system.tap.events(ofType: "payment.cancelled").isEmpty)
        }
    }

    /// The attacker's repro: the payment service stops, an order is placed and cancelled, the
    /// payment service comes back and takes both events in order. Returns the order id and the
    /// correlation ids of the order's and the cancellation's flows once the payment is refunded.
    private func chargedAfterCancel(_ system: System) async throws -> (orderID: String, orderFlow: String, cancelFlow: String) {
        let userID = try await newUser(system)
        let payments = try #require(system.process("payment-service"))
        _ = await payments.stop()
        let orderFlow = UUID().uuidString.lowercased()
        let created = try await system.call(
            "orders.create", ["userId": userID, "items": [["sku": "book", "quantity": 1, "unitPriceCents": 100]]], correlationID: orderFlow)
        #expect(created.string("status") == "pending")
        let orderID = try #require(created.string("id"))
        let cancelFlow = UUID().uuidString.lowercased()
        let cancelled = try await system.call("orders.cancel", ["id": orderID], correlationID: cancelFlow)
        #expect(cancelled.string("status") == "cancelled")
        try await system.tap.wait(for: "order.cancelled", aggregateID: orderID)

        try await system.launch("payment-service", instance: "-again")
        try await system.tap.wait(for: "payment.refunded", aggregateID: orderID)
        let payment = try await system.call("payments.get", ["orderId": orderID])
        #expect(payment.string("status") == "refunded", "\(payment.json)")
        #expect(payment["amountCents"] as? Int == 100)
        #expect(system.tap.events(ofType: "payment.succeeded").count == 1)
        // The order service took the late payment.succeeded and left the order cancelled.
        try await drained("orders.events", system)
        let order = try await system.call("orders.get", ["id": orderID])
        #expect(order.string("status") == "cancelled")
        #expect(order.string("reason") == "cancelled by the customer")
        #expect(system.tap.events(ofType: "order.confirmed").isEmpty)
        return (orderID, orderFlow, cancelFlow)
    }

    /// Waits until `queue` is empty, then a little longer for the outbox relay to publish what
    /// its last event caused.
    private func drained(_ queue: String, _ system: System) async throws {
        for _ in 0..<50 where try await system.channel.inspectQueue(queue).messageCount > 0 {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(700))
    }
}
