import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Several instances of a service, as on several hosts, sharing one PostgreSQL database
/// (`DATABASE_URL`): they behave as one.
@Suite("Instances sharing one PostgreSQL database", .serialized, .timeLimit(.minutes(3)))
struct SharedDatabaseTests {
    @Test("two user-service processes started in different folders share one database: a user created via one is found by six users.get over both")
    func twoHostsOneDatabase() async throws {
        try await withSystem([], backend: .postgres) { system in
            let here = try TemporaryDirectory(), there = try TemporaryDirectory()
            defer {
                here.remove()
                there.remove()
            }
            // No DATA_DIR: each would use ./data of its own folder if it fell back to SQLite.
            let first = try await system.launch("user-service", environment: ["DATA_DIR": ""], instance: "a", workingDirectory: here.url)
            let second = try await system.launch("user-service", environment: ["DATA_DIR": ""], instance: "b", workingDirectory: there.url)
            #expect(try await system.channel.inspectQueue("users.rpc").consumerCount == 2)
            let before = (try await handledRequests(port: first.port), try await handledRequests(port: second.port))

            let id = try await newUser(system)
            var found = 0
            for _ in 0..<6 {
                let reply = try await system.call("users.get", ["id": id])
                #expect(!reply.isError, "\(reply.json)")
                if reply.string("id") == id { found += 1 }
            }
            #expect(found == 6)
            let after = (try await handledRequests(port: first.port), try await handledRequests(port: second.port))
            #expect(after.0 > before.0 && after.1 > before.1, "both instances answered: \(before) → \(after)")
            for folder in [here, there] {
                #expect(!FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("data/users.sqlite").path), "no SQLite file")
            }
            #expect(!first.log.contains("warren:warren@"), "the password is not logged")
        }
    }

    @Test("two order-service instances start on a backlog of 600 unpublished orders: each order.created is published exactly once")
    func twoRelaysOneOutbox() async throws {
        try await withSystem(["user-service"], backend: .postgres) { system in
            // The orders are placed while the relay is paused, so that both relays start on the same backlog.
            let paused = try await system.launch("order-service", environment: ["OUTBOX_RELAY": "paused"], instance: "paused")
            let userID = try await newUser(system)
            let body = try JSONSerialization.data(withJSONObject: ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            let orders = 600
            let placed = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        var ids: [String] = []
                        for _ in 0..<(orders / 10) {
                            let reply = try await system.rpc.call("orders.create", body: body, timeout: .seconds(20))
                            let order = try JSONSerialization.jsonObject(with: reply.body) as? [String: Any]
                            if let id = order?["id"] as? String { ids.append(id) }
                        }
                        return ids
                    }
                }
                return try await group.reduce(into: [String]()) { $0 += $1 }
            }
            #expect(placed.count == orders)
            #expect(system.tap.events(ofType: "order.created").isEmpty, "the relay was paused")
            await paused.stop()

            // Both start at once; each relays what it claims.
            let a = try await system.launch("order-service", instance: "a", waitUntilReady: false)
            let b = try await system.launch("order-service", instance: "b", waitUntilReady: false)
            try await a.waitUntilReady()
            try await b.waitUntilReady()
            try await system.tap.wait(for: "order.created", count: orders, within: .seconds(30))
            try await Task.sleep(for: .seconds(1))  // time for any duplicate to show
            let published = system.tap.events(ofType: "order.created").compactMap(\.aggregateID)
            #expect(published.count == orders, "published \(published.count) for \(orders) orders")
            #expect(Set(published) == Set(placed))
            // What each relay says it published (debug log): together, each order once.
            let relayed = [a, b].map { process in
                process.logLines.filter { $0["msg"] as? String == "relayed events" }.compactMap { $0["count"] as? Int }.reduce(0, +)
            }
            #expect(relayed.reduce(0, +) == orders, "relayed by each instance: \(relayed)")
        }
    }

    @Test("the same command (one message_id) delivered to two instances at once is applied once, and both get its reply")
    func commandOnceAcrossInstances() async throws {
        try await withSystem(["user-service"], backend: .postgres) { system in
            let a = try await system.launch("order-service", instance: "a")
            let b = try await system.launch("order-service", instance: "b")
            #expect(try await system.channel.inspectQueue("orders.rpc").consumerCount == 2)
            let userID = try await newUser(system)
            let body = try JSONSerialization.data(withJSONObject: ["userId": userID, "items": [["sku": "ink", "quantity": 3, "unitPriceCents": 50]]])
            let commands = 20
            for _ in 0..<commands {
                let envelope = Envelope(messageID: UUID().uuidString.lowercased())
                // Two deliveries at once: round-robin hands one to each instance.
                async let first = system.rpc.call("orders.create", body: body, timeout: .seconds(20), envelope: envelope)
                async let second = system.rpc.call("orders.create", body: body, timeout: .seconds(20), envelope: envelope)
                let replies = try await [first, second]
                let ids = try replies.map { reply -> String? in
                    #expect(!reply.isError, "\(String(decoding: reply.body, as: UTF8.self))")
                    return (try JSONSerialization.jsonObject(with: reply.body) as? [String: Any])?["id"] as? String
                }
                #expect(ids[0] != nil && ids[0] == ids[1], "both answered with the one order: \(ids)")
            }
            try await system.tap.wait(for: "order.created", count: commands, within: .seconds(15))
            try await Task.sleep(for: .seconds(1))
            #expect(system.tap.events(ofType: "order.created").count == commands, "one order per command")
            var stored = 0
            var cursor: String?
            repeat {
                var request: [String: Any] = ["userId": userID, "limit": 100]
                if let cursor { request["cursor"] = cursor }
                let page = try await system.call("orders.list", request)
                stored += page.objects("orders").count
                cursor = page.string("next")
            } while cursor != nil
            #expect(stored == commands)
            let answeredFromInbox = [a, b].map { $0.log.components(separatedBy: "command already executed").count - 1 }.reduce(0, +)
            #expect(answeredFromInbox == commands, "each duplicate answered from the command inbox: \(answeredFromInbox)")
        }
    }

    @Test("grant-admin and revoke-admin act on the PostgreSQL database of DATABASE_URL; the running service relays user.updated")
    func grantAdminOnPostgres() async throws {
        try await withSystem(["user-service"], backend: .postgres) { system in
            let email = "root-\(UUID().uuidString.prefix(6))@example.com"
            let id = try await newUser(system, email: email)
            let url = try system.database(of: "user-service").url
            let granted = try UserAdmin.runService(["grant-admin", email.uppercased()], environment: ["DATABASE_URL": url])
            #expect(granted.status == 0, "\(granted)")
            #expect((try await system.call("users.get", ["id": id])).string("role") == "admin")
            #expect(try await system.tap.wait(for: "user.updated", aggregateID: id).count == 1)
            let unknown = try UserAdmin.runService(["grant-admin", "nobody@example.com"], environment: ["DATABASE_URL": url])
            #expect(unknown.status == 1 && unknown.stderr.contains("no account"), "\(unknown)")
            let revoked = try UserAdmin.runService(["revoke-admin", email], environment: ["DATABASE_URL": url])
            #expect(revoked.status == 0, "\(revoked)")
            #expect((try await system.call("users.get", ["id": id])).string("role") == "user")
        }
    }

    @Test(
        "an unusable DATABASE_URL stops the start: exit 1, one critical line naming the server, never the password",
        arguments: [
            "postgres://warren:s3cret-pw@127.0.0.1:1/users?sslmode=disable",  // nothing listens
            "postgres://warren:s3cret-pw@127.0.0.1:5432/users?sslmode=disable",  // wrong password
            "postgres://warren:warren@127.0.0.1:5432/warren_no_such_database?sslmode=disable",
            "postgres://warren:s3cret-pw@127.0.0.1:5432",  // no database
            "postgresql://warren:s3cret-pw@127.0.0.1:5432/users?sslmode=maybe",
        ])
    func unusableURL(url: String) async throws {
        try await withVhost("pg-start") { vhost in
            let process = try ServiceProcess("user-service", environment: ["AMQP_URL": vhost.url, "DATABASE_URL": url, "BCRYPT_COST": "4"])
            let deadline = ContinuousClock.now + .seconds(30)
            while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(await process.stop() == 1, "\(process.log)")
            let critical = process.logLines.filter { $0["level"] as? String == "critical" }
            #expect(critical.count == 1, "\(process.log)")
            let message = critical.first?["msg"] as? String ?? ""
            #expect(message.contains("DATABASE_URL") || message.contains("127.0.0.1"), "\(message)")
            #expect(!process.log.contains("s3cret-pw"), "\(process.log)")
        }
    }
}
