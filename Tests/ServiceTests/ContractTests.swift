import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("The services' contract, for any client", .serialized, .timeLimit(.minutes(3)))
struct ServiceContractTests {
    /// Each bad request, and the field its `invalid` error must name.
    static let badRequests: [(operation: String, body: String, field: String)] = [
        ("users.create", #"{"email":"a@example.com","password":"long enough"}"#, "name"),
        ("users.create", #"{"name":"A","email":"not-an-email","password":"long enough"}"#, "email"),
        ("users.create", #"{"name":"A","email":"a@example.com","password":"short"}"#, "password"),
        ("users.create", #"{"name":"\#(String(repeating: "x", count: 101))","email":"a@example.com","password":"long enough"}"#, "name"),
        ("users.create", #"{"name":42,"email":"a@example.com","password":"long enough"}"#, "name"),
        ("users.get", #"{}"#, "id"),
        ("users.get", #"{"id":"42"}"#, "id"),
        ("users.list", #"{"limit":0}"#, "limit"),
        ("users.list", #"{"cursor":"yesterday"}"#, "cursor"),
        ("users.update", #"{"id":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","email":"nope"}"#, "email"),
        ("users.update", #"{"id":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d"}"#, "name"),
        ("users.delete", #"{"id":true}"#, "id"),
        ("users.authenticate", #"{"email":"a@example.com"}"#, "password"),
        ("orders.create", #"{"items":[{"sku":"a","quantity":1,"unitPriceCents":1}]}"#, "userId"),
        ("orders.create", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","items":[]}"#, "items"),
        ("orders.create", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","items":[{"sku":"a","quantity":-1,"unitPriceCents":1}]}"#, "items[0].quantity"),
        ("orders.create", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","items":[{"sku":"a","quantity":"2","unitPriceCents":1}]}"#, "items[0].quantity"),
        ("orders.create", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","items":[{"sku":"a","quantity":1,"unitPriceCents":-5}]}"#, "items[0].unitPriceCents"),
        ("orders.create", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","items":[{"sku":"\#(String(repeating: "s", count: 65))","quantity":1,"unitPriceCents":1}]}"#, "items[0].sku"),
        ("orders.get", #"{"id":"x"}"#, "id"),
        ("orders.list", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","status":"lost"}"#, "status"),
        ("orders.list", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","status":"Pending"}"#, "status"),
        ("orders.list", #"{"userId":"9b2f3c1e-8d4a-4f6b-9c2d-1e5f7a8b9c0d","status":1}"#, "status"),
        ("orders.cancel", #"{}"#, "id"),
        ("payments.get", #"{"orderId":"x"}"#, "orderId"),
    ]

    @Test("bad input for each operation: invalid, naming the field; the services keep serving")
    func badInput() async throws {
        try await withSystem { system in
            for bad in Self.badRequests {
                let reply = try await system.callRaw(bad.operation, Data(bad.body.utf8))
                #expect(reply.errorCode == "invalid", "\(bad.operation) \(bad.body) → \(reply.json)")
                #expect(reply.errorMessage.contains("'\(bad.field)'"), "\(bad.operation): '\(reply.errorMessage)' does not name \(bad.field)")
                #expect(!reply.errorMessage.contains("Cannot initialize"), "\(bad.operation): Swift's text leaks: \(reply.errorMessage)")
                if bad.field == "status", bad.body.contains(#""status":""#) {
                    #expect(reply.errorMessage == "field 'status' must be one of pending, confirmed, cancelled")
                }
            }
            let notJSON = try await system.callRaw("orders.get", Data("{oops".utf8))
            #expect(notJSON.errorCode == "invalid")
            _ = try await newUser(system)  // still serving
        }
    }

    @Test("every operation from a plain AMQP client: only reply_to, correlation_id, type and a JSON body")
    func plainClient() async throws {
        try await withSystem { system in
            let channel = try await system.connection.openChannel()
            let replies = try await channel.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            var iterator = replies.makeAsyncIterator()
            func call(_ operation: String, _ body: String) async throws -> (status: String?, json: [String: Any]) {
                let correlationID = UUID().uuidString
                try await channel.publish(
                    Data(body.utf8), routingKey: RPCClient.queue(for: operation),
                    properties: AMQPProperties(correlationID: correlationID, replyTo: "amq.rabbitmq.reply-to", type: operation))
                let reply = try #require(try await iterator.next())
                #expect(reply.properties.correlationID == correlationID)
                let json = try JSONSerialization.jsonObject(with: reply.body) as? [String: Any] ?? [:]
                return (reply.properties.headers?[WireHeader.status]?.stringValue, json)
            }
            let email = "plain-\(UUID().uuidString.prefix(6))@example.com"
            let user = try await call("users.create", #"{"name":"Plain","email":"\#(email)","password":"plain password"}"#)
            #expect(user.status == "ok")
            let userID = try #require(user.json["id"] as? String)
            for (operation, body) in [
                ("users.get", #"{"id":"\#(userID)"}"#), ("users.list", #"{}"#),
                ("users.update", #"{"id":"\#(userID)","name":"Plainer"}"#),
                ("users.authenticate", #"{"email":"\#(email)","password":"plain password"}"#),
            ] {
                #expect(try await call(operation, body).status == "ok", "\(operation)")
            }
            let order = try await call("orders.create", #"{"userId":"\#(userID)","items":[{"sku":"a","quantity":1,"unitPriceCents":1}]}"#)
            let orderID = try #require(order.json["id"] as? String)
            for (operation, body) in [("orders.get", #"{"id":"\#(orderID)"}"#), ("orders.list", #"{"userId":"\#(userID)"}"#)] {
                #expect(try await call(operation, body).status == "ok", "\(operation)")
            }
            _ = try await system.eventually("orders.get", ["id": orderID]) { $0.string("status") == "confirmed" }
            #expect(try await call("payments.get", #"{"orderId":"\#(orderID)"}"#).status == "ok")
            let cancel = try await call("orders.cancel", #"{"id":"\#(orderID)"}"#)
            #expect(cancel.status == "error")  // confirmed by then: a conflict, in the error format
            #expect((cancel.json["error"] as? [String: Any])?["code"] as? String == "conflict")
            #expect(try await call("users.delete", #"{"id":"\#(userID)"}"#).status == "ok")
        }
    }

    @Test("requests, replies and events of a whole saga validate against schemas/")
    func messagesMatchSchemas() async throws {
        try await withSystem(environment: ["PAYMENT_LIMIT_CENTS": "1000"]) { system in
            var samples: [String: [Any]] = [:]
            func call(_ service: String, _ operation: String, _ body: [String: Any]) async throws -> Reply {
                samples["\(service)/\(operation).request.schema.json", default: []].append(body)
                let reply = try await system.call(operation, body)
                #expect(!reply.isError, "\(operation): \(reply.json)")
                samples["\(service)/\(operation).reply.schema.json", default: []].append(reply.json)
                return reply
            }
            let email = "schema-\(UUID().uuidString.prefix(6))@example.com"
            let user = try #require(try await call("users", "users.create", ["name": "Schema", "email": email, "password": "schema password"]).string("id"))
            _ = try await call("users", "users.get", ["id": user])
            _ = try await call("users", "users.update", ["id": user, "email": "new-\(email)"])
            _ = try await call("users", "users.authenticate", ["email": "new-\(email)", "password": "schema password"])
            _ = try await call("users", "users.list", ["limit": 1])
            let paid = try #require(try await call("orders", "orders.create", ["userId": user, "items": [["sku": "a", "quantity": 1, "unitPriceCents": 100]]]).string("id"))
            let declined = try #require(try await call("orders", "orders.create", ["userId": user, "items": [["sku": "b", "quantity": 3, "unitPriceCents": 500]]]).string("id"))
            _ = try await system.eventually("orders.get", ["id": declined]) { $0.string("status") == "cancelled" }
            _ = try await system.eventually("orders.get", ["id": paid]) { $0.string("status") == "confirmed" }
            _ = try await call("orders", "orders.get", ["id": paid])
            _ = try await call("orders", "orders.list", ["userId": user, "status": "confirmed"])
            _ = try await call("payments", "payments.get", ["orderId": declined])
            let pending = try #require(try await call("orders", "orders.create", ["userId": user, "idempotencyKey": "k", "items": [["sku": "c", "quantity": 1, "unitPriceCents": 2000]]]).string("id"))
            _ = try await call("orders", "orders.cancel", ["id": pending])
            _ = try await call("users", "users.delete", ["id": user])

            try await system.tap.wait(for: "user.deleted")
            try await system.tap.wait(for: "order.cancelled", count: 2)
            for event in system.tap.events {
                samples["events/\(event.type).schema.json", default: []].append(try JSONSerialization.jsonObject(with: event.body))
            }
            let eventTypes = Set(system.tap.events.map(\.type))
            #expect(eventTypes.isSuperset(of: ["user.registered", "user.updated", "user.deleted", "order.created", "order.confirmed", "order.cancelled", "payment.succeeded", "payment.failed"]))
            for (schema, instances) in samples.sorted(by: { $0.key < $1.key }) {
                let problems = try Schemas.problems(instances, against: schema)
                #expect(problems == nil, "\(schema): \(problems ?? "")")
            }
            // The check can fail: an order without its total is rejected.
            #expect(try Schemas.problems([["id": paid, "userId": user, "items": [], "status": "pending"]], against: "orders/order.schema.json") != nil)
        }
    }
}
