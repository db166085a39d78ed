import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("The user service", .serialized, .timeLimit(.minutes(3)))
struct UserTests {
    @Test("register, get, list in pages, update, delete, each with its event; passwords never leave the service")
    func lifecycle() async throws {
        try await withSystem(["user-service"]) { system in
            let created = try await system.call("users.create", ["name": "Grace", "email": "Grace@Example.com", "password": "a long secret 1"])
            let id = try #require(created.string("id"))
            #expect(created.string("email") == "Grace@Example.com")
            #expect(created.string("role") == "user")
            #expect(created.string("createdAt") != nil)
            #expect(created["password"] == nil && created["passwordHash"] == nil)
            #expect((try await system.call("users.get", ["id": id])).string("name") == "Grace")

            var ids = [id]
            for index in 0..<4 { ids.append(try await newUser(system, email: "user\(index)-\(UUID().uuidString.prefix(6))@example.com")) }
            var listed: [String] = []
            var cursor: String?
            repeat {
                var request: [String: Any] = ["limit": 2]
                if let cursor { request["cursor"] = cursor }
                let page = try await system.call("users.list", request)
                listed += (page["users"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                cursor = page.string("next")
            } while cursor != nil
            #expect(listed == ids)

            let updated = try await system.call("users.update", ["id": id, "name": "Grace Hopper"])
            #expect(updated.string("name") == "Grace Hopper")
            let deleted = try await system.call("users.delete", ["id": id])
            #expect(deleted["deleted"] as? Bool == true)
            #expect((try await system.call("users.get", ["id": id])).errorCode == "not_found")
            #expect((try await system.call("users.delete", ["id": id])).errorCode == "not_found")

            for type in ["user.updated", "user.deleted"] {
                #expect(try await system.tap.wait(for: type, aggregateID: id).count == 1, "\(type)")
            }
            #expect(try await system.tap.wait(for: "user.registered", count: 5).count == 5)
            let bodies = system.tap.events.map { String(decoding: $0.body, as: UTF8.self) }
            #expect(!bodies.contains { $0.contains("a long secret") || $0.contains("$2b$") })
            #expect(!system.process("user-service")!.log.contains("a long secret"))
        }
    }

    @Test("an email is taken whatever its case: conflict, also on update")
    func uniqueEmail() async throws {
        try await withSystem(["user-service"]) { system in
            let email = "dup-\(UUID().uuidString.prefix(6))@example.com"
            _ = try await newUser(system, email: email)
            let again = try await system.call("users.create", ["name": "Other", "email": email.uppercased(), "password": "another secret"])
            #expect(again.errorCode == "conflict")
            let other = try await newUser(system)
            let update = try await system.call("users.update", ["id": other, "email": email])
            #expect(update.errorCode == "conflict")
        }
    }

    @Test("authenticate: the user on the right password; the same unauthorized error for a wrong one and an unknown email")
    func authenticate() async throws {
        try await withSystem(["user-service"]) { system in
            let email = "auth-\(UUID().uuidString.prefix(6))@example.com"
            let id = try await newUser(system, email: email)
            let ok = try await system.call("users.authenticate", ["email": email.uppercased(), "password": "correct horse battery"])
            #expect(ok.string("id") == id)
            let wrong = try await system.call("users.authenticate", ["email": email, "password": "wrong horse battery"])
            let unknown = try await system.call("users.authenticate", ["email": "nobody@example.com", "password": "correct horse battery"])
            #expect(wrong.errorCode == "unauthorized")
            #expect(unknown.errorCode == "unauthorized")
            #expect(wrong.errorMessage == unknown.errorMessage)
        }
    }

    @Test("an address in ADMIN_EMAILS registers as admin")
    func admin() async throws {
        try await withSystem(["user-service"]) { system in
            let admin = try await system.call("users.create", ["name": "Root", "email": "admin@example.com", "password": "admin password"])
            #expect(admin.string("role") == "admin")
        }
    }
}
