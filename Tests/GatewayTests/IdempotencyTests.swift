import Foundation
import Testing
import WarrenTestSupport

@Suite("Idempotency-Key and truthful 503/504 at the gateway", .serialized, .timeLimit(.minutes(5)))
struct IdempotencyTests {
    @Test(
        "a malformed Idempotency-Key is 400 with the JSON error; a well-formed one is accepted",
        arguments: [
            ("129 characters", String(repeating: "k", count: 129), 400),
            ("1,000 characters", String(repeating: "k", count: 1_000), 400),
            ("a space", "two words", 400),
            ("non-ASCII", "ключ-🔑", 400),
            ("a tab", "tab\there", 400),
            ("128 characters", String(repeating: "k", count: 128), 201),
            ("a UUID", UUID().uuidString, 201),
            ("punctuation", #"a-b_c.d:e/f"g'h"#, 201),
            ("one character", "k", 201),
        ])
    func keyValidation(label: String, key: String, status: Int) async throws {
        try await withStandIn { standIn in
            let result = try await standIn.gateway.request("POST", "/echo", json: ["text": "hi"], headers: ["Idempotency-Key": key])
            #expect(result.status == status, "\(label): \(result.text)")
            if status == 400 {
                #expect(result.error["code"] as? String == "invalid", "\(label)")
                #expect((result.error["message"] as? String ?? "").contains("Idempotency-Key"), "\(label)")
                #expect(result.error["requestId"] != nil, "\(label)")
            }
        }
    }

    @Test("while the broker is unreachable a request is 503 at once, not a 504 at its deadline")
    func brokerDown() async throws {
        try await withStandIn { standIn in
            let proxy = try TCPProxy()
            defer { proxy.stop() }
            let gateway = try GatewayProcess(
                vhost: standIn.vhost, openAPI: testContract, environment: ["AMQP_URL": proxy.url(through: standIn.vhost.url)])
            try await gateway.waitUntilReady()
            #expect(try await gateway.request("POST", "/echo", json: ["text": "up"]).status == 201)
            proxy.stop()
            try await Task.sleep(for: .seconds(1))  // the gateway notices the reset at once
            let started = ContinuousClock.now
            let down = try await gateway.request("POST", "/echo", json: ["text": "down"])
            #expect(down.status == 503, "\(down.text)")
            #expect(down.error["code"] as? String == "unavailable")
            #expect(ContinuousClock.now - started < .seconds(1))
            await gateway.stop()
        }
    }

    @Test("a queue nobody consumes is 504 'outcome unknown' (the request stays queued), not 503; a missing queue is 503")
    func noConsumer() async throws {
        try await withStandIn { standIn in
            let started = ContinuousClock.now
            let stopped = try await standIn.gateway.request("GET", "/stopped")
            #expect(stopped.status == 504, "\(stopped.text)")
            #expect((stopped.error["message"] as? String ?? "").contains("outcome is unknown"))
            #expect(ContinuousClock.now - started < .seconds(2))
            let missing = try await standIn.gateway.request("GET", "/missing")
            #expect(missing.status == 503)
        }
    }

    /// The real services behind two gateway instances: a client's retry with the same key, through
    /// either, is the same command to the order service and gets the first answer.
    @Test("the same Idempotency-Key twice, through two gateways: one order, one charge, the same reply; another body is 409")
    func sameKeyOneOrder() async throws {
        try await withVhost("gateway-idempotency") { vhost in
            let data = try TemporaryDirectory()
            defer { data.remove() }
            let environment = ["AMQP_URL": vhost.url, "DATA_DIR": data.path, "BCRYPT_COST": "4"]
            let users = try ServiceProcess("user-service", environment: environment)
            var orders = try ServiceProcess("order-service", environment: environment)
            let payments = try ServiceProcess("payment-service", environment: environment)
            let first = try GatewayProcess(vhost: vhost)
            let second = try GatewayProcess(vhost: vhost)
            do {
                for service in [users, orders, payments] { try await service.waitUntilReady() }
                try await first.waitUntilReady()
                try await second.waitUntilReady()

                let ada = try await first.request(
                    "POST", "/users", json: ["name": "Ada", "email": "ada@example.com", "password": "correct horse battery"])
                let adaID = try #require(ada.json["id"] as? String)
                let adaToken = try await token(subject: adaID)
                let items: [[String: Any]] = [["sku": "book", "quantity": 2, "unitPriceCents": 1_500]]
                let key = UUID().uuidString

                let placed = try await first.request("POST", "/orders", json: ["items": items], token: adaToken, headers: ["Idempotency-Key": key])
                #expect(placed.status == 201, "\(placed.text)")
                let retried = try await second.request("POST", "/orders", json: ["items": items], token: adaToken, headers: ["Idempotency-Key": key])
                #expect(retried.status == 201)
                #expect(retried.body == placed.body, "the same reply, byte for byte")
                let orderID = try #require(placed.json["id"] as? String)

                let other = try await first.request(
                    "POST", "/orders", json: ["items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]], token: adaToken,
                    headers: ["Idempotency-Key": key])
                #expect(other.status == 409, "\(other.text)")
                #expect(other.error["code"] as? String == "conflict")

                let list = try await first.request("GET", "/orders", token: adaToken)
                #expect((list.json["orders"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == [orderID])
                var payment = try await first.request("GET", "/payments/\(orderID)", token: adaToken)
                let deadline = ContinuousClock.now + .seconds(15)
                while payment.status != 200, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    payment = try await first.request("GET", "/payments/\(orderID)", token: adaToken)
                }
                #expect(payment.json["amountCents"] as? Int == 3_000)

                // The order service is stopped: the request waits in orders.rpc, so the answer is
                // 504 "outcome unknown", fast; once the service is back, a retry with the same key
                // gets the one order, whether the queued request ran or expired.
                await orders.stop()
                let laterKey = UUID().uuidString
                let started = ContinuousClock.now
                let waiting = try await first.request("POST", "/orders", json: ["items": items], token: adaToken, headers: ["Idempotency-Key": laterKey])
                #expect(waiting.status == 504, "\(waiting.text)")
                #expect((waiting.error["message"] as? String ?? "").contains("Idempotency-Key"))
                #expect(ContinuousClock.now - started < .seconds(2))
                orders = try ServiceProcess("order-service", environment: environment)
                try await orders.waitUntilReady()
                let again = try await second.request("POST", "/orders", json: ["items": items], token: adaToken, headers: ["Idempotency-Key": laterKey])
                #expect(again.status == 201, "\(again.text)")
                try await Task.sleep(for: .milliseconds(500))
                let after = try await first.request("GET", "/orders", token: adaToken)
                #expect((after.json["orders"] as? [Any])?.count == 2, "\(after.text)")
            } catch {
                Issue.record("failed: \(error)\ngateway log:\n\(first.process.log.suffix(3000))")
            }
            await first.stop()
            await second.stop()
            for service in [users, orders, payments] { await service.stop() }
        }
    }
}
