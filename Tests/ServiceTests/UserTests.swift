import Foundation
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

@Suite("The user service", .serialized, .timeLimit(.minutes(3)))
struct UserTests {
    @Test("register, get, list in pages, update, delete, each with its event; passwords never leave the service", arguments: StorageBackend.allCases)
    func lifecycle(backend: StorageBackend) async throws {
        try await withSystem(["user-service"], backend: backend) { system in
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

    @Test("an email is taken whatever its case: conflict, also on update", arguments: StorageBackend.allCases)
    func uniqueEmail(backend: StorageBackend) async throws {
        try await withSystem(["user-service"], backend: backend) { system in
            let email = "dup-\(UUID().uuidString.prefix(6))@example.com"
            _ = try await newUser(system, email: email)
            let again = try await system.call("users.create", ["name": "Other", "email": email.uppercased(), "password": "another secret"])
            #expect(again.errorCode == "conflict")
            let other = try await newUser(system)
            let update = try await system.call("users.update", ["id": other, "email": email])
            #expect(update.errorCode == "conflict")
        }
    }

    @Test("authenticate: the user on the right password; the same unauthorized error for a wrong one and an unknown email", arguments: StorageBackend.allCases)
    func authenticate(backend: StorageBackend) async throws {
        try await withSystem(["user-service"], backend: backend) { system in
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

    @Test("registering never grants a role, even an address in ADMIN_EMAILS in any case; grant-admin does, and says so in an event")
    func admin() async throws {
        try await withSystem(["user-service"], environment: ["ADMIN_EMAILS": "admin@example.com"]) { system in
            // The listed address, in another case: a plain user like everyone.
            let registered = try await system.call("users.create", ["name": "Root", "email": "ADMIN@Example.COM", "password": "admin password"])
            let id = try #require(registered.string("id"))
            #expect(registered.string("role") == "user", "\(registered.json)")
            #expect(system.process("user-service")!.log.contains("ADMIN_EMAILS is no longer read"))

            let granted = try UserAdmin.run(["grant-admin", "Admin@EXAMPLE.com"], data: system.data.path)
            #expect(granted.status == 0, "\(granted)")
            #expect((try await system.call("users.get", ["id": id])).string("role") == "admin")
            let events = try await system.tap.wait(for: "user.updated", aggregateID: id)
            #expect(events.count == 1, "the running service relays the event the command stored")
            let body = try JSONSerialization.jsonObject(with: events.first?.body ?? Data()) as? [String: Any]
            #expect(body?["role"] as? String == "admin")

            let again = try UserAdmin.run(["grant-admin", "admin@example.com"], data: system.data.path)
            #expect(again.status == 0)
            let revoked = try UserAdmin.run(["revoke-admin", "admin@example.com"], data: system.data.path)
            #expect(revoked.status == 0)
            #expect((try await system.call("users.get", ["id": id])).string("role") == "user")

            for (arguments, status) in [
                (["grant-admin", "nobody@example.com"], Int32(1)), (["grant-admin"], 2), (["grant-admin", "not an email"], 2),
                (["make-me-admin", "admin@example.com"], 2), (["grant-admin", "a@example.com", "b@example.com"], 2),
            ] {
                let result = try UserAdmin.run(arguments, data: system.data.path)
                #expect(result.status == status, "\(arguments): \(result)")
                #expect(!result.stderr.isEmpty)
            }
            #expect((try await system.call("users.get", ["id": id])).string("role") == "user")

            let elsewhere = try TemporaryDirectory()
            defer { elsewhere.remove() }
            let wrongDirectory = try UserAdmin.run(["grant-admin", "admin@example.com"], data: elsewhere.path)
            #expect(wrongDirectory.status == 1)
            #expect(wrongDirectory.stderr.contains("no user database"), "\(wrongDirectory)")
            #expect(!FileManager.default.fileExists(atPath: elsewhere.url.appendingPathComponent("users.sqlite").path), "nothing created")
        }
    }

    /// Passwords bcrypt would cut (NUL anywhere, more than 72 bytes), and lone surrogates that are not text at all.
    static let hostilePasswords: [String] = [
        #""\u0000secret-one""#, #""abcdefgh\u0000tail-part""#, #""long enough\u0000""#, #""\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000""#,
        "\"" + String(repeating: "p", count: 73) + "\"", "\"" + String(repeating: "é", count: 37) + "\"",
        #""\ud800abcdefgh""#, #""abcdefgh\udc00""#,
    ]

    @Test("a password bcrypt would cut is invalid at registration and at login; no prefix logs in")
    func passwordsKeptExactly() async throws {
        try await withSystem(["user-service"]) { system in
            for (index, password) in Self.hostilePasswords.enumerated() {
                let body = #"{"name":"Eve","email":"eve\#(index)@example.com","password":\#(password)}"#
                let reply = try await system.callRaw("users.create", Data(body.utf8))
                #expect(reply.errorCode == "invalid", "\(password) → \(reply.json)")
                let login = try await system.callRaw("users.authenticate", Data(#"{"email":"eve\#(index)@example.com","password":\#(password)}"#.utf8))
                #expect(login.errorCode == "invalid", "\(password) → \(login.json)")
            }
            for bad in [#"{"name":"N\u0000ul","email":"n@example.com","password":"long enough"}"#,
                        #"{"name":"Line\nBreak","email":"l@example.com","password":"long enough"}"#,
                        #"{"name":"Nul","email":"admin@example.com\u0000x","password":"long enough"}"#] {
                #expect((try await system.callRaw("users.create", Data(bad.utf8))).errorCode == "invalid", "\(bad)")
            }

            // 72 bytes is bcrypt's whole; 73 that agree on those 72 must not log in.
            let exact = String(repeating: "k", count: 71) + "1"
            let email = "bcrypt-\(UUID().uuidString.prefix(6))@example.com"
            let created = try await system.call("users.create", ["name": "Kay", "email": email, "password": exact])
            #expect(created.string("id") != nil, "\(created.json)")
            #expect((try await system.call("users.authenticate", ["email": email, "password": exact])).string("id") == created.string("id"))
            for longer in [exact + "X", exact + "1", exact + "\u{0}"] {
                let login = try await system.call("users.authenticate", ["email": email, "password": longer])
                #expect(login.errorCode == "invalid", "\(longer.utf8.count) bytes → \(login.json)")
            }
            for shorter in [String(exact.dropLast()), "\u{0}", "\u{0}" + exact] {
                let login = try await system.call("users.authenticate", ["email": email, "password": shorter])
                #expect(login.isError, "\(login.json)")
                #expect(login.string("id") == nil)
            }
            // Still serving.
            _ = try await newUser(system)
        }
    }

    @Test("a user id in upper case finds, updates and deletes the same user")
    func idCase() async throws {
        try await withSystem(["user-service"]) { system in
            let id = try await newUser(system)
            #expect((try await system.call("users.get", ["id": id.uppercased()])).string("id") == id)
            #expect((try await system.call("users.update", ["id": id.uppercased(), "name": "Upper"])).string("name") == "Upper")
            #expect((try await system.call("users.delete", ["id": id.uppercased()])).string("id") == id)
            #expect((try await system.call("users.get", ["id": id])).errorCode == "not_found")
        }
    }

    @Test("BCRYPT_COST outside 4…31 stops the start with a message, never a trap")
    func bcryptCost() async throws {
        for cost in ["3", "32", "300", "-1", "twelve", "1e3"] {
            let result = try UserAdmin.runService(environment: ["BCRYPT_COST": cost, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"])
            #expect(result.status == 1, "\(cost): \(result)")
            #expect(result.stderr.contains("BCRYPT_COST"), "\(cost): \(result)")
        }
    }
}

/// `user-service` run as an operator runs it: arguments, environment, exit status and output.
enum UserAdmin {
    struct Result: CustomStringConvertible {
        let status: Int32
        let stdout: String
        let stderr: String
        var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
    }

    static func run(_ arguments: [String], data: String) throws -> Result {
        try runService(arguments, environment: ["DATA_DIR": data])
    }

    static func runService(_ arguments: [String] = [], environment: [String: String]) throws -> Result {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("user-admin-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("out"), err = directory.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = ServiceProcess.buildDirectory.appendingPathComponent("user-service")
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged["LOG_FORMAT"] = "json"
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }
}
