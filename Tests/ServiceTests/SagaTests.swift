import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("The order saga across real service processes", .serialized, .timeLimit(.minutes(3)))
struct SagaTests {
    @Test("user → order → payment succeeded → order confirmed, every event once and on one correlation id", arguments: StorageBackend.allCases)
    func orderIsConfirmed(backend: StorageBackend) async throws {
        try await withSystem(System.allServices + ["event-store"], backend: backend) { system in
            let flow = UUID().uuidString.lowercased()
            let userID = try await newUser(system, correlationID: flow)
            let created = try await system.call(
                "orders.create", ["userId": userID, "items": [["sku": "book", "quantity": 2, "unitPriceCents": 1_250]]], correlationID: flow)
            #expect(!created.isError, "\(created.json)")
            #expect(created.string("status") == "pending")
            #expect(created["totalCents"] as? Int == 2_500)
            let orderID = try #require(created.string("id"))

            let confirmed = try await system.eventually("orders.get", ["id": orderID]) { $0.string("status") == "confirmed" }
            #expect(confirmed.string("status") == "confirmed")
            let payment = try await system.call("payments.get", ["orderId": orderID])
            #expect(payment.string("status") == "succeeded")
            #expect(payment["amountCents"] as? Int == 2_500)
            // Ids in either case name the same thing (clients may send upper case).
            #expect(try await system.call("orders.get", ["id": orderID.uppercased()]).string("id") == orderID)
            #expect(try await system.call("payments.get", ["orderId": orderID.uppercased()]).string("status") == "succeeded")
            let listed = try await system.call("orders.list", ["userId": userID.uppercased()])
            #expect(listed.objects("orders").compactMap { $0["id"] as? String } == [orderID])

            try await system.tap.wait(for: "order.confirmed", aggregateID: orderID)
            for type in ["user.registered", "order.created", "payment.succeeded", "order.confirmed"] {
                let seen = system.tap.events(ofType: type)
                #expect(seen.count == 1, "\(type) seen \(seen.count) times")
                #expect(seen.first?.correlationID == flow, "\(type) is not on the flow's correlation id")
            }
            // The event store has recorded the flow, each event once.
            let recorded = try await system.recordedTypes(correlationID: flow, atLeast: 4)
            #expect(recorded == ["user.registered", "order.created", "payment.succeeded", "order.confirmed"])
        }
    }

    @Test("an order above the payment limit is cancelled with the reason", arguments: StorageBackend.allCases)
    func declinedOrderIsCancelled(backend: StorageBackend) async throws {
        try await withSystem(environment: ["PAYMENT_LIMIT_CENTS": "10000"], backend: backend) { system in
            let userID = try await newUser(system)
            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "car", "quantity": 1, "unitPriceCents": 10_001]]])
            let orderID = try #require(created.string("id"))
            let cancelled = try await system.eventually("orders.get", ["id": orderID]) { $0.string("status") == "cancelled" }
            #expect(cancelled.string("status") == "cancelled")
            #expect(cancelled.string("reason")?.contains("above the limit") == true, "\(cancelled.json)")
            let payment = try await system.call("payments.get", ["orderId": orderID])
            #expect(payment.string("status") == "failed")
            #expect(try await system.tap.wait(for: "order.cancelled", aggregateID: orderID).count == 1)
            #expect(system.tap.events(ofType: "payment.succeeded").isEmpty)
        }
    }

    @Test("an unknown user: not_found, no order stored, no event")
    func unknownUser() async throws {
        try await withSystem { system in
            let stranger = UUID().uuidString.lowercased()
            let reply = try await system.call("orders.create", ["userId": stranger, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            #expect(reply.errorCode == "not_found")
            let list = try await system.call("orders.list", ["userId": stranger])
            #expect((list["orders"] as? [Any])?.isEmpty == true)
            try await Task.sleep(for: .milliseconds(500))  // longer than the outbox relay's poll
            #expect(system.tap.events(ofType: "order.created").isEmpty)
        }
    }

    @Test("the user service is down: unavailable at once, nothing stored")
    func userServiceDown() async throws {
        try await withSystem(["order-service"]) { system in
            let userID = UUID().uuidString.lowercased()
            let started = ContinuousClock.now
            let reply = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            #expect(reply.errorCode == "unavailable", "\(reply.json)")
            #expect(ContinuousClock.now - started < .seconds(3))
            let list = try await system.call("orders.list", ["userId": userID])
            #expect((list["orders"] as? [Any])?.isEmpty == true)
        }
    }

    @Test("the same idempotency key gives the same order; reused for other items it is a conflict")
    func idempotencyKey() async throws {
        try await withSystem(["user-service", "order-service"]) { system in
            let userID = try await newUser(system)
            let body: [String: Any] = ["userId": userID, "idempotencyKey": "checkout-1", "items": [["sku": "pen", "quantity": 3, "unitPriceCents": 100]]]
            let first = try await system.call("orders.create", body)
            let second = try await system.call("orders.create", body)
            #expect(first.string("id") != nil)
            #expect(first.string("id") == second.string("id"))
            let other = try await system.call("orders.create", ["userId": userID, "idempotencyKey": "checkout-1", "items": [["sku": "ink", "quantity": 1, "unitPriceCents": 100]]])
            #expect(other.errorCode == "conflict")
            let list = try await system.call("orders.list", ["userId": userID])
            #expect((list["orders"] as? [Any])?.count == 1)
            try await Task.sleep(for: .milliseconds(500))
            #expect(system.tap.events(ofType: "order.created").count == 1)
        }
    }

    @Test("orders.cancel: a pending order is cancelled; a confirmed one is a conflict")
    func cancel() async throws {
        // Without the payment service the order stays pending.
        try await withSystem(["user-service", "order-service"]) { system in
            let userID = try await newUser(system)
            let pending = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let cancelled = try await system.call("orders.cancel", ["id": try #require(pending.string("id"))])
            #expect(cancelled.string("status") == "cancelled")
            #expect(try await system.tap.wait(for: "order.cancelled").count == 1)
            // Cancelled again (a new request, not a redelivery): the same answer, no second event, counted once.
            let again = try await system.call("orders.cancel", ["id": try #require(pending.string("id"))])
            #expect(again.string("status") == "cancelled")
            let process = try #require(system.process("order-service"))
            let (_, metrics) = try await get("/metrics", port: process.port)
            #expect(metrics.contains(#"orders_settled_total{status="cancelled"} 1"#))

            try await system.launch("payment-service")
            let paid = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let paidID = try #require(paid.string("id"))
            _ = try await system.eventually("orders.get", ["id": paidID]) { $0.string("status") == "confirmed" }
            let refused = try await system.call("orders.cancel", ["id": paidID])
            #expect(refused.errorCode == "conflict")
            let unknown = try await system.call("orders.cancel", ["id": UUID().uuidString.lowercased()])
            #expect(unknown.errorCode == "not_found")
            #expect(system.tap.events(ofType: "order.cancelled").count == 1)
        }
    }

    @Test("order.created delivered twice, or again under a new message id: still one payment")
    func onePaymentPerOrder() async throws {
        try await withSystem { system in
            let userID = try await newUser(system)
            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let orderID = try #require(created.string("id"))
            let event = try #require(try await system.tap.wait(for: "order.created", aggregateID: orderID).first)
            try await system.tap.wait(for: "payment.succeeded", aggregateID: orderID)
            let first = try await system.call("payments.get", ["orderId": orderID])

            // The same message again, and a copy under a new id, straight into the payment service's queue.
            try await system.republish(event, to: "payments.events")
            try await Task.sleep(for: .seconds(1))
            let info = try await system.channel.inspectQueue("payments.events")
            #expect(info.messageCount == 0)
            let again = try await system.call("payments.get", ["orderId": orderID])
            #expect(again.string("id") == first.string("id"))
            #expect(system.tap.events(ofType: "payment.succeeded").count == 1)
            #expect(system.tap.events(ofType: "order.confirmed").count == 1)
        }
    }

    @Test("payment.succeeded delivered again, under its own id and under a new one: the order is confirmed and counted once (a repeated orders.cancel: `cancel`)")
    func settledOnce() async throws {
        try await withSystem { system in
            let userID = try await newUser(system)
            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let orderID = try #require(created.string("id"))
            let paid = try #require(try await system.tap.wait(for: "payment.succeeded", aggregateID: orderID).first)
            try await system.tap.wait(for: "order.confirmed", aggregateID: orderID)

            // The same payment event again, and a copy under a new id, straight into the order service's queue.
            try await system.republish(paid, to: "orders.events")
            for _ in 0..<50 where try await system.channel.inspectQueue("orders.events").messageCount > 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(system.tap.events(ofType: "order.confirmed").count == 1)
            let process = try #require(system.process("order-service"))
            let (_, metrics) = try await get("/metrics", port: process.port)
            #expect(metrics.contains(#"orders_settled_total{status="confirmed"} 1"#), "\(metrics.split(separator: "\n").filter { $0.hasPrefix("orders_settled") })")
            #expect(!metrics.contains(#"orders_settled_total{status="cancelled"}"#))
        }
    }

    @Test("killed after writing the outbox row, before publishing: the event goes out after the restart", arguments: StorageBackend.allCases)
    func outboxSurvivesACrash(backend: StorageBackend) async throws {
        try await withSystem(["user-service"], backend: backend) { system in
            let userID = try await newUser(system)
            let orders = try await system.launch("order-service", environment: ["OUTBOX_RELAY": "paused"])
            let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let orderID = try #require(created.string("id"))
            try await Task.sleep(for: .milliseconds(500))
            #expect(system.tap.events(ofType: "order.created").isEmpty)
            orders.kill()

            try await system.launch("order-service", instance: "-restarted")
            let published = try await system.tap.wait(for: "order.created", aggregateID: orderID)
            #expect(published.count == 1)
        }
    }

    @Test("two instances of each service on the same queues: every event applied once", arguments: StorageBackend.allCases)
    func competingConsumers(backend: StorageBackend) async throws {
        try await withSystem(backend: backend) { system in
            try await system.launch("order-service", instance: "-2")
            try await system.launch("payment-service", instance: "-2")
            let userID = try await newUser(system)
            var orderIDs: [String] = []
            for index in 0..<10 {
                let created = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen-\(index)", "quantity": 1, "unitPriceCents": 100]]])
                orderIDs.append(try #require(created.string("id")))
            }
            for orderID in orderIDs {
                let order = try await system.eventually("orders.get", ["id": orderID]) { $0.string("status") == "confirmed" }
                #expect(order.string("status") == "confirmed")
            }
            try await Task.sleep(for: .milliseconds(500))
            #expect(Set(system.tap.events(ofType: "payment.succeeded").map(\.aggregateID)).count == 10)
            #expect(system.tap.events(ofType: "payment.succeeded").count == 10)
            #expect(system.tap.events(ofType: "order.confirmed").count == 10)
        }
    }
}
