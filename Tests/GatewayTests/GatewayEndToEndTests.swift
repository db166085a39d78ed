import Foundation
import Testing
import WarrenTestSupport

/// The gateway in front of the real user, order and payment services, each a process, all in a
/// vhost of the test's own: what a client of the HTTP API sees.
@Suite("Gateway end to end, with the real services", .timeLimit(.minutes(5)))
struct GatewayEndToEndTests {
    @Test("register, token, own user, orders, payments, admin routes, health; a stopped service is 504 at once")
    func journey() async throws {
        try await withVhost("gateway-e2e") { vhost in
            let data = try TemporaryDirectory()
            let environment = ["AMQP_URL": vhost.url, "DATA_DIR": data.path, "BCRYPT_COST": "4"]
            let users = try ServiceProcess("user-service", environment: environment)
            let orders = try ServiceProcess("order-service", environment: environment)
            let payments = try ServiceProcess("payment-service", environment: environment)
            let events = try ServiceProcess("event-store", environment: environment)
            let gateway = try GatewayProcess(vhost: vhost)
            defer { data.remove() }
            do {
                for service in [users, orders, payments, events] { try await service.waitUntilReady() }
                try await waitForLog(events, "recording every event")  // bound to warren.events before the first order
                try await gateway.waitUntilReady()
                try await journey(gateway, users: users, orders: orders, data: data.path)
            } catch {
                Issue.record("failed: \(error)\ngateway log:\n\(gateway.process.log.suffix(3000))")
            }
            await gateway.stop()
            for service in [users, orders, payments, events] { await service.stop() }
        }
    }

    /// Bodies the issue names, sent as raw JSON: each is 400 `invalid` naming the field, never a token.
    static let hostileRegistrations: [(body: String, field: String)] = [
        (#"{"name":"Eve","email":"eve1@example.com","password":"\u0000secret-one"}"#, "password"),
        (#"{"name":"Eve","email":"eve2@example.com","password":"abcdefgh\u0000tail-part"}"#, "password"),
        (#"{"name":"Eve","email":"eve3@example.com","password":"long enough\u0000"}"#, "password"),
        (#"{"name":"Eve","email":"eve4@example.com","password":"\#(String(repeating: "x", count: 73))"}"#, "password"),
        (#"{"name":"E\u0000ve","email":"eve5@example.com","password":"long enough"}"#, "name"),
        (#"{"name":"Eve","email":"root@example.com\u0000.evil","password":"long enough"}"#, "email"),
        (#"{"name":"Eve","email":"eve7@example.com","password":"\ud800long enough"}"#, "JSON"),
    ]

    static let hostileLogins = [#""\u0000""#, #""\u0000anything""#, #""abcdefgh\u0000OTHER""#, "\"" + String(repeating: "k", count: 72) + "X\""]

    static let impossibleTimes = ["2026-02-30", "2026-13-01", "2026-01-01T24:00:00Z", "2016-12-31T23:59:60Z", "2026-01-01T12:00:00+24:00", "2026-01-01T12:00:00"]

    @Test("hostile input through the gateway: NUL and over-long passwords, ids in upper case, impossible times")
    func hostile() async throws {
        try await withVhost("gateway-hostile") { vhost in
            let data = try TemporaryDirectory()
            let environment = ["AMQP_URL": vhost.url, "DATA_DIR": data.path, "BCRYPT_COST": "4"]
            let users = try ServiceProcess("user-service", environment: environment)
            let events = try ServiceProcess("event-store", environment: environment)
            let gateway = try GatewayProcess(vhost: vhost)
            defer { data.remove() }
            do {
                for service in [users, events] { try await service.waitUntilReady() }
                try await gateway.waitUntilReady()
                try await hostile(gateway, data: data.path)
            } catch {
                Issue.record("failed: \(error)\ngateway log:\n\(gateway.process.log.suffix(3000))")
            }
            await gateway.stop()
            for service in [users, events] { await service.stop() }
        }
    }

    private func hostile(_ gateway: GatewayProcess, data: String) async throws {
        func post(_ path: String, _ body: String) async throws -> GatewayProcess.HTTPResult {
            try await gateway.request("POST", path, body: Data(body.utf8), contentType: "application/json")
        }
        for (body, field) in Self.hostileRegistrations {
            let result = try await post("/users", body)
            #expect(result.status == 400, "\(body) → \(result.status) \(result.text)")
            #expect(result.error["code"] as? String == "invalid")
            #expect((result.error["message"] as? String ?? "").contains(field), "\(body) → \(result.text)")
        }
        // An account with a 72-byte password, and an empty-prefix one that the old code would have made.
        let password = String(repeating: "k", count: 72)
        let kay = try await post("/users", #"{"name":"Kay","email":"kay@example.com","password":"\#(password)"}"#)
        #expect(kay.status == 201, "\(kay.text)")
        let kayID = try #require(kay.json["id"] as? String)
        for login in Self.hostileLogins {
            for email in ["kay@example.com", "eve1@example.com", "eve2@example.com"] {
                let result = try await post("/auth/token", #"{"email":"\#(email)","password":\#(login)}"#)
                #expect(result.status == 400 || result.status == 401, "\(email) \(login) → \(result.status)")
                #expect(result.json["access_token"] == nil)
            }
        }
        let issued = try await post("/auth/token", #"{"email":"kay@example.com","password":"\#(password)"}"#)
        let kayToken = try #require(issued.json["access_token"] as? String, "\(issued.text)")

        // Your own id in upper case is still yours; someone else's is not.
        let upper = try await gateway.request("GET", "/users/\(kayID.uppercased())", token: kayToken)
        #expect(upper.status == 200, "\(upper.text)")
        #expect(upper.json["id"] as? String == kayID)
        #expect(try await gateway.request("PATCH", "/users/\(kayID.uppercased())", json: ["name": "Kay K."], token: kayToken).status == 200)
        #expect(try await gateway.request("GET", "/users/\(UUID().uuidString)", token: kayToken).status == 403)

        // Times: an admin (made by the operator's command) asks the event store.
        let root = try await post("/users", #"{"name":"Root","email":"root@example.com","password":"root password"}"#)
        #expect(root.json["role"] as? String == "user")
        #expect(try grantAdmin("ROOT@example.com", data: data) == 0)
        let rootToken = try #require(
            try await post("/auth/token", #"{"email":"root@example.com","password":"root password"}"#).json["access_token"] as? String)
        for time in Self.impossibleTimes {
            for field in ["since", "until"] {
                let query = "\(field)=\(time.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? time)"
                let result = try await gateway.request("GET", "/events?\(query)", token: rootToken)
                #expect(result.status == 400, "\(query) → \(result.status) \(result.text)")
                #expect((result.error["message"] as? String ?? "").contains("'\(field)'"), "\(result.text)")
            }
        }
        let valid = try await gateway.request("GET", "/events?since=2026-02-28&until=2100-01-01T00:00:00%2B01:00", token: rootToken)
        #expect(valid.status == 200, "\(valid.text)")
    }

    private func journey(_ gateway: GatewayProcess, users: ServiceProcess, orders: ServiceProcess, data: String) async throws {
        let password = "correct horse battery"
        // Registration and tokens.
        let ada = try await gateway.request(
            "POST", "/users", json: ["name": "Ada", "email": "ada@example.com", "password": password], headers: ["X-Request-ID": "e2e-register-ada"])
        #expect(ada.status == 201)
        #expect(ada.header("X-Request-ID") == "e2e-register-ada")
        // The service received the request id as the flow's correlation id and logs with it.
        try await waitUntil(within: .seconds(10)) {
            users.logLines.contains { $0["msg"] as? String == "user registered" && $0["correlation_id"] as? String == "e2e-register-ada" }
        }
        #expect(ada.json["role"] as? String == "user")
        #expect(ada.json["password"] == nil)
        let adaID = try #require(ada.json["id"] as? String)
        let duplicate = try await gateway.request("POST", "/users", json: ["name": "Ada", "email": "ada@example.com", "password": password])
        #expect(duplicate.status == 409)
        let root = try await gateway.request("POST", "/users", json: ["name": "Root", "email": "root@example.com", "password": password])
        #expect(root.json["role"] as? String == "user", "registering never makes an admin")
        #expect(try grantAdmin("root@example.com", data: data) == 0, "the operator's command does")
        let bob = try await gateway.request("POST", "/users", json: ["name": "Bob", "email": "bob@example.com", "password": password])
        let bobID = try #require(bob.json["id"] as? String)

        let refused = try await gateway.request("POST", "/auth/token", json: ["email": "ada@example.com", "password": "wrong password"])
        #expect(refused.status == 401)
        #expect(refused.error["code"] as? String == "unauthorized")
        let issued = try await gateway.request("POST", "/auth/token", json: ["email": "ada@example.com", "password": password])
        #expect(issued.status == 200)
        #expect(issued.json["token_type"] as? String == "Bearer")
        #expect(issued.json["expires_in"] as? Int == 3600)
        let adaToken = try #require(issued.json["access_token"] as? String)
        let rootToken = try #require(
            try await gateway.request("POST", "/auth/token", json: ["email": "root@example.com", "password": password]).json["access_token"] as? String)
        let bobToken = try #require(
            try await gateway.request("POST", "/auth/token", json: ["email": "bob@example.com", "password": password]).json["access_token"] as? String)

        // Users: yourself, not others; the list for admins.
        let me = try await gateway.request("GET", "/users/\(adaID)", token: adaToken)
        #expect(me.status == 200)
        #expect(me.json["email"] as? String == "ada@example.com")
        #expect(try await gateway.request("GET", "/users/\(bobID)", token: adaToken).status == 403)
        let renamed = try await gateway.request("PATCH", "/users/\(adaID)", json: ["name": "Ada L."], token: adaToken)
        #expect(renamed.status == 200)
        #expect(renamed.json["name"] as? String == "Ada L.")
        #expect(try await gateway.request("GET", "/users", token: adaToken).status == 403)
        let list = try await gateway.request("GET", "/users?limit=10", token: rootToken)
        #expect(list.status == 200)
        #expect((list.json["users"] as? [Any])?.count == 3)
        #expect(try await gateway.request("GET", "/events", token: adaToken).status == 403)

        // Orders: the user id comes from the token, whatever the body says.
        let placed = try await gateway.request(
            "POST", "/orders", json: ["userId": bobID, "items": [["sku": "book", "quantity": 2, "unitPriceCents": 1500]]], token: adaToken)
        #expect(placed.status == 201)
        #expect(placed.json["userId"] as? String == adaID)
        #expect(placed.json["totalCents"] as? Int == 3000)
        let orderID = try #require(placed.json["id"] as? String)
        #expect(try await gateway.request("GET", "/orders/\(orderID)", token: adaToken).status == 200)
        #expect(try await gateway.request("GET", "/orders/\(orderID)", token: bobToken).status == 404, "not Bob's to know")
        #expect(try await gateway.request("GET", "/orders/\(orderID)", token: rootToken).status == 200)
        let mine = try await gateway.request("GET", "/orders", token: adaToken)
        #expect((mine.json["orders"] as? [[String: Any]])?.map { $0["id"] as? String } == [orderID])
        let bobs = try await gateway.request("GET", "/orders", token: bobToken)
        #expect((bobs.json["orders"] as? [Any])?.isEmpty == true)

        // The payment follows through events; then the order is confirmed and cannot be cancelled.
        var payment = try await gateway.request("GET", "/payments/\(orderID)", token: adaToken)
        for _ in 0..<100 where payment.status == 404 {
            try await Task.sleep(for: .milliseconds(100))
            payment = try await gateway.request("GET", "/payments/\(orderID)", token: adaToken)
        }
        #expect(payment.status == 200)
        #expect(payment.json["amountCents"] as? Int == 3000)
        #expect(try await gateway.request("GET", "/payments/\(orderID)", token: bobToken).status == 404)
        #expect(try await gateway.request("POST", "/orders/\(orderID)/cancel", token: bobToken).status == 404)
        var order = try await gateway.request("GET", "/orders/\(orderID)", token: adaToken)
        for _ in 0..<100 where order.json["status"] as? String == "pending" {
            try await Task.sleep(for: .milliseconds(100))
            order = try await gateway.request("GET", "/orders/\(orderID)", token: adaToken)
        }
        let cancel = try await gateway.request("POST", "/orders/\(orderID)/cancel", token: adaToken)
        #expect(cancel.status == 409, "a confirmed order cannot be cancelled: \(cancel.text)")

        // The event store, for admins: filters as events.query.
        var stored = try await gateway.request("GET", "/events?type=order.*&aggregateId=\(orderID)&limit=10", token: rootToken)
        for _ in 0..<100 where (stored.json["events"] as? [Any])?.isEmpty != false {
            try await Task.sleep(for: .milliseconds(100))
            stored = try await gateway.request("GET", "/events?type=order.*&aggregateId=\(orderID)&limit=10", token: rootToken)
        }
        #expect(stored.status == 200)
        #expect((stored.json["events"] as? [[String: Any]])?.first?["type"] as? String == "order.created")

        // Health names each service.
        let health = try await gateway.request("GET", "/health")
        let services = health.json["services"] as? [String: [String: Any]] ?? [:]
        for name in ["users", "orders", "payments", "events"] { #expect(services[name]?["status"] as? String == "ok", "\(name)") }
        #expect(health.json["broker"] as? String == "connected")
        #expect(health.status == 200)
        // A method no route has is refused and counted as "other" (the HTTP parser itself turns
        // away methods it does not know, with 400).
        let propfind = try await gateway.request("PROPFIND", "/health")
        #expect(propfind.status == 405, "\(propfind.status) \(propfind.text)")
        let metrics = try await gateway.request("GET", "/metrics")
        #expect(metrics.text.contains(#"gateway_http_requests_total{route="/orders/{id}",method="GET",status="404"}"#))
        #expect(metrics.text.contains(#"method="other""#))
        #expect(!metrics.text.contains("PROPFIND"))
        #expect(metrics.text.contains("gateway_http_request_duration_seconds_bucket"))
        let document = try await gateway.request("GET", "/openapi.yaml")
        #expect(document.text.contains("x-warren-operation: users.get"))

        // Deleting yourself; then you are gone.
        #expect(try await gateway.request("DELETE", "/users/\(adaID)", token: bobToken).status == 403)
        #expect(try await gateway.request("DELETE", "/users/\(adaID)", token: adaToken).status == 200)
        #expect(try await gateway.request("GET", "/users/\(adaID)", token: adaToken).status == 404)

        // A stopped service: 504 (the request waits in its queue: outcome unknown), fast.
        await orders.stop()
        let started = ContinuousClock.now
        let stopped = try await gateway.request("GET", "/orders/\(orderID)", token: rootToken)
        #expect(stopped.status == 504)
        #expect(ContinuousClock.now - started < .seconds(2))

        #expect(!gateway.process.log.contains(password))
        #expect(!users.log.contains(password))
    }
}

/// `user-service grant-admin <email>` against the user service's database, as an operator runs
/// it; returns the exit status.
func grantAdmin(_ email: String, data: String) throws -> Int32 {
    let process = Process()
    process.executableURL = ServiceProcess.buildDirectory.appendingPathComponent("user-service")
    process.arguments = ["grant-admin", email]
    var environment = ProcessInfo.processInfo.environment
    environment["DATA_DIR"] = data
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}
