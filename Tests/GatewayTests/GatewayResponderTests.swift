import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Testing
import Warren
@testable import WarrenGateway

/// The gateway's rules in process: routing, tokens, roles, ownership, rate limits, idempotency
/// keys, bodies and the mapping of every service error to HTTP, through `GatewayResponder` (and
/// the connection pipeline on an `EmbeddedChannel`) with `FakeServices` in place of the broker.
/// The real-broker suites keep the wire.
@Suite("Gateway in process")
struct GatewayResponderTests {
    static let alice = "0b9e5b4c-6f1e-4a8e-9c1d-2f3a4b5c6d7e"
    static let bob = "7d6c5b4a-3f2e-4d1c-8b9a-0e1f2a3b4c5d"

    // MARK: - Routing

    @Test("an unknown route is 404 in the JSON error format and reaches no service", arguments: [
        "/nope", "/USERS", "/users/a/b", "/orders/1/refund", "/openapi.yaml/x", "/health/deep",
        "/payments", "/events/flows", "/" + String(repeating: "x", count: 8_000), "/users/%00/x", "/ü",
    ])
    func unknownRoute(path: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.GET, path)
        #expect(response.status == 404)
        #expect(response.errorCode == "not_found")
        #expect(response.headers.first(name: "Content-Type") == "application/json")
        #expect(response.errorRequestID == response.headers.first(name: "X-Request-ID"))
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("a method a route does not take is 405 with Allow, before any token check", arguments: [
        (HTTPMethod.PUT, "/users"), (.DELETE, "/orders"), (.POST, "/health"), (.PATCH, "/auth/token"),
        (.POST, "/users/\(GatewayResponderTests.alice)"), (.GET, "/orders/\(GatewayResponderTests.alice)/cancel"), (.TRACE, "/metrics"), (.RAW(value: "BREW"), "/users"),
    ])
    func wrongMethod(method: HTTPMethod, path: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(method, path)
        #expect(response.status == 405)
        #expect(response.errorCode == "method_not_allowed")
        let allow = try #require(response.headers.first(name: "Allow"))
        #expect(!allow.isEmpty)
        #expect(!allow.contains(method.rawValue))
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("HEAD is routed as GET")
    func headAsGet() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"\#(Self.alice)"}"#) })
        let token = try await gateway.token(Self.alice)
        let response = await gateway.send(.HEAD, "/users/\(Self.alice)", token: token)
        #expect(response.status == 200)
        #expect(gateway.services.operations == ["users.get"])
    }

    // MARK: - Tokens

    /// Authorization headers that name no valid token.
    static func hostileAuthorizations() async throws -> [(String, String)] {
        let now = Date()
        let other = await TokenAuthority(secret: "another-secret-entirely-0123456789abcdef", lifetime: .seconds(3600))
        let expired = try await TokenAuthority(secret: InProcessGateway.secret, lifetime: .seconds(60))
            .issue(subject: alice, role: "user", now: now - 3_600)
        let authority = await TokenAuthority(secret: InProcessGateway.secret, lifetime: .seconds(3600))
        var valid = try await authority.issue(subject: alice, role: "admin", now: now)
        // One with `-` or `_`, so that its standard-base64 spelling below differs from it (about
        // one token in a hundred has neither, and was then accepted as itself).
        var second = 0.0
        while !valid.contains(where: { $0 == "-" || $0 == "_" }) {
            second += 1
            valid = try await authority.issue(subject: alice, role: "admin", now: now + second)
        }
        let parts = valid.split(separator: ".").map(String.init)
        func base64URL(_ text: String) -> String {
            Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let noneHeader = base64URL(#"{"alg":"none","typ":"JWT"}"#)
        let hs512Header = base64URL(#"{"alg":"HS512","typ":"JWT"}"#)
        var forgedPayload = parts
        forgedPayload[1] = base64URL(#"{"sub":"\#(bob)","role":"admin","exp":99999999999,"iat":0}"#)
        return [
            ("empty", ""),
            ("scheme only", "Bearer"),
            ("scheme and spaces", "Bearer    "),
            ("another scheme", "Basic YWxpY2U6c2VjcmV0"),
            ("two parts", "Bearer abc.def"),
            ("four parts", "Bearer a.b.c.d"),
            ("not base64", "Bearer !!!.???.***"),
            ("header not JSON", "Bearer \(base64URL("not json")).\(parts[1]).\(parts[2])"),
            ("alg none", "Bearer \(noneHeader).\(parts[1])."),
            ("alg HS512", "Bearer \(hs512Header).\(parts[1]).\(parts[2])"),
            ("payload swapped", "Bearer \(forgedPayload.joined(separator: "."))"),
            ("signature cut", "Bearer \(parts[0]).\(parts[1]).\(parts[2].dropLast(4))"),
            ("signed with another secret", "Bearer \(try await other.issue(subject: alice, role: "admin"))"),
            ("expired", "Bearer \(expired)"),
            ("huge", "Bearer " + String(repeating: "A", count: 60_000)),
            ("control bytes", "Bearer \(parts[0])\u{0}.\(parts[1]).\(parts[2])"),
            ("non-ASCII", "Bearer ééé.ùùù.ççç"),
            // A valid token written another way: the same signature under many spellings.
            ("padding appended", "Bearer \(valid)="),
            ("padding appended twice", "Bearer \(valid)=="),
            ("padding in the header segment", "Bearer \(parts[0])=.\(parts[1]).\(parts[2])"),
            ("standard base64 characters", "Bearer \(valid.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/"))"),
            ("space inside", "Bearer \(parts[0]). \(parts[1]).\(parts[2])"),
        ]
    }

    @Test("every hostile token is 401 with WWW-Authenticate, and no service hears of it")
    func hostileTokens() async throws {
        let gateway = try await InProcessGateway()
        for (name, authorization) in try await Self.hostileAuthorizations() {
            for (method, path) in [(HTTPMethod.GET, "/users/\(Self.alice)"), (.GET, "/users"), (.DELETE, "/users/\(Self.alice)")] {
                let response = await gateway.send(method, path, headers: [("Authorization", authorization)])
                #expect(response.status == 401, "\(name): \(method) \(path)")
                #expect(response.errorCode == "unauthorized", "\(name)")
                #expect(response.headers.first(name: "WWW-Authenticate") == "Bearer", "\(name)")
                // The message says what is wrong with the token, never echoes a secret.
                #expect(response.errorMessage?.contains(InProcessGateway.secret) == false, "\(name)")
            }
        }
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("a token with its header sent twice is refused, not half read")
    func duplicatedAuthorization() async throws {
        let gateway = try await InProcessGateway()
        let token = try await gateway.token(Self.alice)
        let response = await gateway.send(
            .GET, "/users/\(Self.alice)", headers: [("Authorization", "Bearer \(token)"), ("Authorization", "Bearer \(token)")])
        #expect(response.status == 401)
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("the first request with a token (verified in a task) and the next (from the cache) get the same answer")
    func freshAndCachedToken() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"\#(Self.alice)","name":"Alice"}"#) })
        let token = try await gateway.token(Self.alice)
        let first = await gateway.send(.GET, "/users/\(Self.alice)", token: token)
        let second = await gateway.send(.GET, "/users/\(Self.alice)", token: token)
        #expect(first.status == 200)
        #expect(second.status == 200)
        #expect(first.body == second.body)
        #expect(first.json["name"] as? String == "Alice")
        #expect(gateway.services.operations == ["users.get", "users.get"])
    }

    // MARK: - Roles and ownership

    @Test("an admin route refuses a user (403) and serves an admin")
    func adminRoute() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"users":[],"next":null}"#) })
        let user = await gateway.send(.GET, "/users", token: try await gateway.token(Self.alice))
        #expect(user.status == 403)
        #expect(user.errorCode == "forbidden")
        #expect(gateway.services.sent.isEmpty)
        let admin = await gateway.send(.GET, "/users", token: try await gateway.token(Self.bob, role: "admin"))
        #expect(admin.status == 200)
        #expect(gateway.services.operations == ["users.list"])
    }

    @Test("a user acts on their own account only; an id in upper case is their own")
    func selfParameter() async throws {
        let gateway = try await InProcessGateway(FakeServices { sent in FakeServices.reply(#"{"id":"\#(sent.fields["id"] as? String ?? "")"}"#) })
        let token = try await gateway.token(Self.alice)
        let other = await gateway.send(.DELETE, "/users/\(Self.bob)", token: token)
        #expect(other.status == 403)
        #expect(gateway.services.sent.isEmpty)
        let own = await gateway.send(.GET, "/users/\(Self.alice.uppercased())", token: token)
        #expect(own.status == 200)
        #expect(gateway.services.sent.first?.fields["id"] as? String == Self.alice)
        let admin = await gateway.send(.GET, "/users/\(Self.alice)", token: try await gateway.token(Self.bob, role: "admin"))
        #expect(admin.status == 200)
    }

    @Test("another user's order is reported missing (404); the owner and an admin see it")
    func ownershipFromReply() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"o1","userId":"\#(Self.bob.uppercased())"}"#) })
        let alice = await gateway.send(.GET, "/orders/\(Self.alice)", token: try await gateway.token(Self.alice))
        #expect(alice.status == 404)
        #expect(alice.errorCode == "not_found")
        let bob = await gateway.send(.GET, "/orders/\(Self.alice)", token: try await gateway.token(Self.bob))
        #expect(bob.status == 200)
        let admin = await gateway.send(.GET, "/orders/\(Self.alice)", token: try await gateway.token(Self.alice, role: "admin"))
        #expect(admin.status == 200)
    }

    @Test("cancelling another user's order looks it up and never sends the cancel")
    func ownershipLookup() async throws {
        let gateway = try await InProcessGateway(FakeServices { sent in
            sent.operation == "orders.get" ? FakeServices.reply(#"{"id":"o1","userId":"\#(Self.bob)"}"#) : FakeServices.reply(#"{"id":"o1"}"#)
        })
        let refused = await gateway.send(.POST, "/orders/\(Self.alice)/cancel", token: try await gateway.token(Self.alice))
        #expect(refused.status == 404)
        #expect(gateway.services.operations == ["orders.get"])
        let allowed = await gateway.send(.POST, "/orders/\(Self.alice)/cancel", token: try await gateway.token(Self.bob))
        #expect(allowed.status == 200)
        #expect(gateway.services.operations == ["orders.get", "orders.get", "orders.cancel"])
    }

    /// Every route with `x-warren-owner`, with a path naming someone's resource (the table below
    /// must list them all: `ownedRoutesListed` compares it with the route table).
    static let ownedRoutes: [(method: HTTPMethod, path: String)] = [
        (.GET, "/orders/\(alice)"), (.POST, "/orders/\(alice)/cancel"), (.GET, "/payments/\(alice)"),
    ]

    @Test("the owned-route table names every route with x-warren-owner")
    func ownedRoutesListed() {
        let owned = Set(InProcessGateway.routes.routes.filter { $0.ownership != nil }.map { "\($0.method) \($0.path)" })
        #expect(owned == ["GET /orders/{id}", "POST /orders/{id}/cancel", "GET /payments/{orderId}"])
        #expect(owned.count == Self.ownedRoutes.count)
    }

    @Test("on every owned route, a missing resource and someone else's give a non-admin the same 404 body", arguments: 0..<3)
    func ownedNotFoundIsUniform(index: Int) async throws {
        let (method, path) = Self.ownedRoutes[index]
        let missingMessages = ["no order \(Self.alice)", "no payment for order \(Self.alice)", "not found", ""]
        var bodies: [String: [String: String]] = [:]
        for missingMessage in missingMessages {
            let missing = try await InProcessGateway(FakeServices { _ in FakeServices.errorReply(.notFound, missingMessage) })
            let others = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"o1","userId":"\#(Self.alice)"}"#) })
            for (label, gateway) in [("missing (\(missingMessage))", missing), ("someone else's", others)] {
                let response = await gateway.send(method, path, token: try await gateway.token(Self.bob))
                #expect(response.status == 404, "\(method) \(path) \(label)")
                #expect(response.headers.first(name: "Content-Type") == "application/json")
                var error = try #require(response.json["error"] as? [String: String], "\(label)")
                #expect(error.removeValue(forKey: "requestId") == response.headers.first(name: "X-Request-ID"))
                bodies[label] = error
                #expect(!gateway.services.operations.contains("orders.cancel"), "\(label)")
            }
        }
        #expect(bodies.count == missingMessages.count + 1)
        for (label, body) in bodies { #expect(body == ["code": "not_found", "message": "not found"], "\(method) \(path) \(label)") }
        // An admin is told what the service said; so is a non-owned route's caller.
        let admin = try await InProcessGateway(FakeServices { _ in FakeServices.errorReply(.notFound, "no order \(Self.alice)") })
        let adminAnswer = await admin.send(method, path, token: try await admin.token(Self.bob, role: "admin"))
        #expect(adminAnswer.errorMessage == "no order \(Self.alice)")
    }

    @Test("an owner check on a reply without the owner field is a 500, not a leak")
    func ownershipWithoutField() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"o1"}"#) })
        let response = await gateway.send(.GET, "/orders/\(Self.alice)", token: try await gateway.token(Self.alice))
        #expect(response.status == 500)
        #expect(response.errorCode == "internal")
    }

    @Test("the token's subject replaces whatever user the body names")
    func subjectField() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"o1"}"#) })
        let response = await gateway.send(
            .POST, "/orders", token: try await gateway.token(Self.alice.uppercased()),
            body: #"{"userId":"\#(Self.bob)","items":[{"sku":"a","quantity":1}]}"#)
        #expect(response.status == 201)
        let sent = try #require(gateway.services.sent.first)
        #expect(sent.fields["userId"] as? String == Self.alice)
        #expect(sent.timeout == .seconds(10))
    }

    @Test("odd and huge ids reach the service as one JSON string, exactly", arguments: [
        String(repeating: "a", count: 10_000), "..", "x'y", "<script>", "ø", "-1", "0", "1e999", "null", "true",
        "a\\b", "{}", "[]", "%2Fetc%2Fpasswd",
    ])
    func oddIDs(id: String) async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"x","userId":"y"}"#) })
        let response = await gateway.send(.GET, "/orders/\(id)", token: try await gateway.token(Self.alice, role: "admin"))
        #expect(response.status == 200)
        let sent = try #require(gateway.services.sent.first)
        #expect(sent.operation == "orders.get")
        #expect(sent.fields["id"] is String)
        if !id.contains("%") { #expect(sent.fields["id"] as? String == id) }
        // A user's own-account check compares the id as given: an odd id is someone else's.
        let user = await gateway.send(.GET, "/users/\(id)", token: try await gateway.token(Self.alice))
        #expect(user.status == 403)
    }

    // MARK: - Bodies

    @Test("a body that is not a JSON object is 400 and reaches no service", arguments: [
        "{", "[]", "null", "42", #""text""#, #"{"a":1"#, #"{"a":1}}"#, "{'a':1}", "\u{FEFF}", "{\"a\":NaN}", "[" + String(repeating: "[", count: 5_000),
    ])
    func badJSON(body: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.POST, "/users", body: body)
        #expect(response.status == 400, "\(body.prefix(20))")
        #expect(response.errorCode == "invalid")
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("bytes that are not UTF-8 are 400")
    func notUTF8() async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.POST, "/users", bodyBytes: [0x7B, 0x22, 0xFF, 0xFE, 0x22, 0x3A, 0x31, 0x7D])
        #expect(response.status == 400)
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("a body that is not sent as JSON in UTF-8 is 415", arguments: [
        "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json",
        "application/json; charset=utf-16", "application/json; charset=UTF-16LE", "application/json;charset=\"utf-16\"",
        "application/json; charset=iso-8859-1", "application/json; charset=latin1", "application/json; charset=utf8",
        "application/json; charset=", "application/json; charset=\"\"", "application/json; charset=utf-8; charset=utf-16",
        "application/problem+json; charset=us-ascii", "application/json; charset=utf-7",
    ])
    func wrongContentType(contentType: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.POST, "/users", headers: [("Content-Type", contentType)], body: #"{"a":1}"#)
        #expect(response.status == 415)
        #expect(response.errorCode == "unsupported_media_type")
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("JSON media types with parameters and +json suffixes are accepted", arguments: [
        "application/json", "application/json; charset=utf-8", "Application/JSON", "application/problem+json",
        "application/json; charset=UTF-8", "application/json;charset=\"utf-8\"", "application/json ; Charset = Utf-8 ",
        "application/problem+json; charset=utf-8",
    ])
    func jsonContentTypes(contentType: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.POST, "/users", headers: [("Content-Type", contentType)], body: #"{"a":1}"#)
        #expect(response.status == 201)
        #expect(gateway.services.operations == ["users.create"])
    }

    @Test("a body over the limit is 413")
    func tooLarge() async throws {
        let gateway = try await InProcessGateway()
        let body = #"{"a":""# + String(repeating: "x", count: gateway.configuration.maxBodyBytes) + #""}"#
        let response = await gateway.send(.POST, "/users", body: body)
        #expect(response.status == 413)
        #expect(response.errorCode == "payload_too_large")
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("an unknown, mistyped or repeated query parameter is 400", arguments: [
        "/orders?colour=red", "/orders?limit=abc", "/users/\(GatewayResponderTests.alice)?x=1", "/orders?limit=1&limit=2",
        "/orders?limit=1&limit=1", "/orders?status=pending&limit=5&status=cancelled", "/orders?cursor=&cursor=", "/orders?limit=2&limit",
    ])
    func badQuery(uri: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.GET, uri, token: try await gateway.token(Self.alice, role: "admin"))
        #expect(response.status == 400)
        #expect(response.errorCode == "invalid")
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("a repeated query parameter is refused naming it, not silently the last value", arguments: [
        ("/orders?limit=1&limit=2", "limit"), ("/orders?status=pending&status=cancelled", "status"), ("/orders?cursor=a&limit=3&cursor=b", "cursor"),
    ])
    func repeatedQuery(uri: String, name: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.GET, uri, token: try await gateway.token(Self.alice))
        #expect(response.status == 400)
        #expect(response.errorMessage == "query parameter '\(name)' is given more than once; send it once")
        #expect(gateway.services.sent.isEmpty)
        let once = await gateway.send(.GET, "/orders?limit=1&status=pending", token: try await gateway.token(Self.alice))
        #expect(once.status == 200)
    }

    // MARK: - Error mapping

    static let statusOfCode: [(ServiceError.Code, Int)] = [
        (.invalid, 400), (.unauthorized, 401), (.forbidden, 403), (.notFound, 404), (.conflict, 409),
        (.internal, 500), (.unavailable, 503), (.timeout, 504),
    ]

    @Test("every service error code maps to its status, as an error reply and as a failed call", arguments: GatewayResponderTests.statusOfCode)
    func errorMapping(code: ServiceError.Code, status: Int) async throws {
        #expect(Self.statusOfCode.count == ServiceError.Code.allCases.count)
        for asReply in [true, false] {
            let gateway = try await InProcessGateway(FakeServices { _ in
                asReply ? FakeServices.errorReply(code, "from the service") : .failure(ServiceError(code, "from the client"))
            })
            let response = await gateway.send(.GET, "/users/\(Self.alice)", token: try await gateway.token(Self.alice))
            #expect(response.status == status, "\(code) as \(asReply ? "reply" : "failure")")
            #expect(response.errorCode == code.rawValue)
            // A timeout of the call itself is told in the gateway's words (the client's speak of AMQP).
            let clientsWords = code == .timeout ? "no answer came in time, so the outcome is unknown; a GET changes nothing and can be retried" : "from the client"
            #expect(response.errorMessage == (asReply ? "from the service" : clientsWords))
            #expect(response.errorRequestID == response.headers.first(name: "X-Request-ID"))
            #expect(response.headers.first(name: "Content-Type") == "application/json")
        }
    }

    @Test("a timeout of a command says the outcome is unknown and how to retry safely")
    func commandTimeout() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in .failure(ServiceError(.timeout, "no reply within 10 s")) })
        let token = try await gateway.token(Self.alice)
        let body = #"{"items":[{"sku":"a","quantity":1}]}"#
        let bare = await gateway.send(.POST, "/orders", token: token, body: body)
        #expect(bare.status == 504)
        #expect(bare.errorMessage?.contains("Idempotency-Key") == true)
        let keyed = await gateway.send(.POST, "/orders", token: token, headers: [("Idempotency-Key", "retry-me-1")], body: body)
        #expect(keyed.status == 504)
        #expect(keyed.errorMessage?.contains("'retry-me-1'") == true)
        #expect(keyed.errorMessage?.contains("send an Idempotency-Key") == false)
        for message in [bare.errorMessage, keyed.errorMessage] {
            // One sentence of the gateway's own: the client's AMQP wording is not nested in it.
            #expect(message?.contains("no reply within") == false, "\(message ?? "")")
            #expect(message?.contains("message_id") == false, "\(message ?? "")")
            #expect(message?.contains("(") == false, "\(message ?? "")")
        }
    }

    @Test("a 504 never tells a caller to send the Idempotency-Key it sent, on any path and cause", arguments: [
        "no reply within 10 s",
        "the connection to the message broker was lost while waiting for orders.rpc: the request may have been executed; the outcome is unknown (retry with the same message_id)",
        "no instance of the service is consuming orders.rpc: the request waits there until its deadline and runs if an instance starts before then, so its outcome is unknown (retry with the same message_id)",
    ])
    func timeoutWithKey(cause: String) async throws {
        // The cancel times out; its owner check answers.
        let cancelTimesOut = try await InProcessGateway(FakeServices { sent in
            sent.operation == "orders.get" ? FakeServices.reply(#"{"id":"o1","userId":"\#(Self.bob)"}"#) : .failure(ServiceError(.timeout, cause))
        })
        let token = try await cancelTimesOut.token(Self.bob)
        let cancel = await cancelTimesOut.send(.POST, "/orders/\(Self.alice)/cancel", token: token, headers: [("Idempotency-Key", "cx1")])
        #expect(cancel.status == 504)
        #expect(
            cancel.errorMessage
                == "no answer came in time, so the outcome is unknown: retry with the same Idempotency-Key 'cx1', which returns the answer if the request ran instead of running it twice")
        // The owner check times out: the cancel was never sent.
        let lookupTimesOut = try await InProcessGateway(FakeServices { _ in .failure(ServiceError(.timeout, cause)) })
        let refused = await lookupTimesOut.send(
            .POST, "/orders/\(Self.alice)/cancel", token: try await lookupTimesOut.token(Self.bob), headers: [("Idempotency-Key", "cx1")])
        #expect(refused.status == 504)
        #expect(refused.errorMessage == "the owner check (orders.get) got no answer in time, so the request was not sent; it can be retried")
        #expect(lookupTimesOut.services.operations == ["orders.get"])
        // A read.
        let read = await lookupTimesOut.send(.GET, "/orders/\(Self.alice)", token: try await lookupTimesOut.token(Self.bob))
        #expect(read.errorMessage == "no answer came in time, so the outcome is unknown; a GET changes nothing and can be retried")
        for message in [cancel.errorMessage, refused.errorMessage, read.errorMessage] {
            #expect(message?.contains("send an Idempotency-Key") == false)
            #expect(message?.contains("message_id") == false)
        }
    }

    /// Reply bodies no reply may have: not JSON, or JSON cut short or followed by more.
    static let brokenReplies: [Data] = [
        Data(), Data("not json".utf8), Data([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), Data(#"{"id":"a"#.utf8),
        Data(#"{"id":1} trailing"#.utf8), Data("<h1>502 Bad Gateway</h1>".utf8), Data([0]), Data("{'id':1}".utf8), Data("NaN".utf8),
        Data("\u{1b}[2J".utf8),
        Data(#"{"a":1}{"b":2}"#.utf8), Data("[1,2".utf8), Data(#""unterminated"#.utf8), Data(#"{"a":Infinity}"#.utf8),
        Data(#"{"a":"\#u{1}"}"#.utf8), Data("{} x".utf8), Data("1 2".utf8), Data(#"{"a":tru}"#.utf8), Data("[\"\u{0}\"]".utf8),
        Data("{}".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }), Data([0xFF, 0xFE] + "{}".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }),
        Data(#"{"a":"é"}"#.utf8) + Data([0xC3]), Data([0x22, 0xED, 0xA0, 0x80, 0x22]), Data([0x22, 0xC0, 0xAF, 0x22]), Data(#"{"a":1}"#.utf8) + Data([0]),
        Data([0xEF, 0xBB, 0xBF] + Array("{}".utf8)), Data("{,}".utf8), Data("[,1]".utf8), Data(#"{"a" 1}"#.utf8), Data(#"{"a":1,,"b":2}"#.utf8),
        Data(".5".utf8), Data("+1".utf8), Data("-0x1".utf8), Data(#"{"a":"\#u{7}"}"#.utf8), Data("\u{7F}\u{1}".utf8),
    ]

    /// Replies that are JSON: any top-level value, with whitespace and escapes.
    static let goodReplies: [String] = [
        "{}", "[]", "1", "-0.5e-3", #""s""#, "null", "true", " \n\t{} \r\n", #"{"a":[1,2.5e3,{"b":null}],"c":"ø\u00e9\ud83d\ude00"}"#,
        #"{"id":"a","userId":"b","total":12345678901234567890}"#, "[" + String(repeating: "[1],", count: 1_000) + "0]",
        #"{"name":"Zoë 🐇 ✓","text":"tab\tand\nline"}"#, "\"\u{10FFFF}\"",
    ]

    @Test("the JSON check refuses every broken body and takes every JSON document", arguments: [true, false])
    func jsonCheck(good: Bool) {
        if good {
            for body in Self.goodReplies { #expect(GatewayResponder.isJSON(Data(body.utf8)), "\(body.prefix(40))") }
        } else {
            for body in Self.brokenReplies { #expect(!GatewayResponder.isJSON(body), "\(Array(body.prefix(20)))") }
        }
    }

    @Test("an error reply the gateway cannot read is a 502 naming the operation, logged with the correlation id", arguments: [
        "", "not json", "{}", #"{"error":"x"}"#, #"{"error":{"code":"teapot","message":"m"}}"#, #"{"error":{"code":7}}"#, "[]",
        #"{"error":{"code":"not_found"}"#, "\u{1b}[2J",
    ])
    func unreadableErrorReply(body: String) async throws {
        let log = RecordedLog()
        let gateway = try await InProcessGateway(
            FakeServices { _ in .success(PlainReply(isError: true, body: Data(body.utf8))) }, logger: log.logger)
        let response = await gateway.send(.GET, "/users/\(Self.alice)", token: try await gateway.token(Self.alice))
        #expect(response.status == 502)
        #expect(response.errorCode == "bad_gateway")
        #expect(response.errorMessage == "users.get replied with an error that is not in the error format")
        let requestID = try #require(response.headers.first(name: "X-Request-ID"))
        #expect(response.errorRequestID == requestID)
        let warning = log.all.first { $0.level == .warning && $0.message == "an error reply not in the error format" }
        #expect(warning?.metadata["correlation_id"] == "\(requestID)")
        #expect(warning?.metadata["operation"] == "users.get")
    }

    @Test("an ok reply whose body is not JSON is a 502 in the gateway's error format, never forwarded", arguments: GatewayResponderTests.brokenReplies)
    func replyNotJSON(body: Data) async throws {
        let log = RecordedLog()
        let gateway = try await InProcessGateway(FakeServices { _ in .success(PlainReply(isError: false, body: body)) }, logger: log.logger)
        for (method, path, bodyText) in [(HTTPMethod.GET, "/users/\(Self.alice)", nil), (.POST, "/users", #"{"name":"A"}"#)] {
            let token = try await gateway.token(Self.alice)
            let response = await gateway.send(method, path, token: method == .GET ? token : nil, body: bodyText)
            #expect(response.status == 502, "\(method) \(path)")
            #expect(response.errorCode == "bad_gateway")
            #expect(response.errorMessage?.contains("replied with a body that is not JSON") == true)
            #expect(response.headers.first(name: "Content-Type") == "application/json")
            let requestID = try #require(response.headers.first(name: "X-Request-ID"))
            #expect(response.errorRequestID == requestID)
            let warning = log.all.first { $0.level == .warning && $0.message == "a reply whose body is not JSON" && $0.metadata["correlation_id"] == "\(requestID)" }
            #expect(warning?.metadata["bytes"] == "\(body.count)")
        }
    }

    @Test("a reply without a valid x-status is a 502 naming the operation, on the direct path and the task paths")
    func replyWithoutStatus() async throws {
        let gateway = try await InProcessGateway(FakeServices { sent in .failure(RPCClient.invalidStatus(queue: RPCClient.queue(for: sent.operation))) })
        let direct = await gateway.send(.GET, "/users/\(Self.alice)", token: try await gateway.token(Self.alice))
        // A token seen for the first time is verified in a task: the path `serve` takes.
        let inTask = await gateway.send(.GET, "/orders/\(Self.alice)", token: try await gateway.token(Self.bob))
        let login = await gateway.send(.POST, "/auth/token", body: #"{"email":"a@b.c","password":"secret123"}"#)
        for (response, operation) in [(direct, "users.get"), (inTask, "orders.get"), (login, "users.authenticate")] {
            #expect(response.status == 502, "\(operation)")
            #expect(response.errorCode == "bad_gateway")
            #expect(response.errorMessage?.hasPrefix("\(operation) replied without a valid x-status header") == true, "\(response.errorMessage ?? "")")
        }
        // The service's own `internal` error is still a 500.
        #expect(RPCClient.isInvalidStatus(.internal("users.rpc failed")) == false)
    }

    @Test("a reply is forwarded byte for byte, with the route's success status")
    func replyForwarded() async throws {
        let reply = #"{"id":"\#(Self.alice)","name":"Ä \"quoted\" \u00e9","n":1.50}"#
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(reply) })
        let response = await gateway.send(.POST, "/users", body: #"{"name":"A"}"#)
        #expect(response.status == 201)
        #expect(String(decoding: response.body.readableBytesView, as: UTF8.self) == reply)
    }

    // MARK: - Rate limits, idempotency keys, request ids

    @Test("past the burst an address gets 429 with Retry-After; other addresses and /health do not")
    func rateLimit() async throws {
        let gateway = try await InProcessGateway(environment: ["RATE_LIMIT_PER_SECOND": "0.01", "RATE_LIMIT_BURST": "2"])
        let first = await gateway.send(.GET, "/openapi.yaml")
        let second = await gateway.send(.GET, "/openapi.yaml")
        let third = await gateway.send(.GET, "/openapi.yaml")
        #expect(first.status == 200)
        #expect(second.status == 200)
        #expect(third.status == 429)
        #expect(third.errorCode == "rate_limited")
        let retryAfter = try #require(third.headers.first(name: "Retry-After").flatMap(Int.init))
        #expect((1...3_600).contains(retryAfter))
        let other = await gateway.send(.GET, "/openapi.yaml", remoteAddress: "198.51.100.7")
        #expect(other.status == 200)
        let health = await gateway.send(.GET, "/health")
        #expect(health.status == 200)
        // A refused request reaches no service.
        let refused = await gateway.send(.POST, "/users", body: "{}")
        #expect(refused.status == 429)
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("an Idempotency-Key gives the same message id for the same caller and route, another for another")
    func idempotencyKeys() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"o1"}"#) })
        let alice = try await gateway.token(Self.alice)
        let bob = try await gateway.token(Self.bob)
        let body = #"{"items":[{"sku":"a","quantity":1}]}"#
        for (token, key) in [(alice, "k-1"), (alice, "k-1"), (alice, "k-2"), (bob, "k-1")] {
            _ = await gateway.send(.POST, "/orders", token: token, headers: [("Idempotency-Key", key)], body: body)
        }
        _ = await gateway.send(.POST, "/orders", token: alice, body: body)
        _ = await gateway.send(.POST, "/orders", token: alice, body: body)
        let ids = gateway.services.sent.map(\.envelope.messageID)
        #expect(ids.count == 6)
        #expect(ids[0] == ids[1])
        #expect(Set(ids).count == 5)
    }

    @Test("a malformed Idempotency-Key is 400 and nothing is sent", arguments: [
        "", " ", "a b", String(repeating: "k", count: 129), "key\u{7F}", "clé", "k1, k2",
    ])
    func badIdempotencyKey(key: String) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.POST, "/users", headers: [("Idempotency-Key", key)], body: "{}")
        #expect(response.status == 400)
        #expect(response.errorCode == "invalid")
        #expect(gateway.services.sent.isEmpty)
    }

    @Test("a sane X-Request-ID is the correlation id end to end; an insane one is replaced", arguments: [
        ("req-123", true), ("", false), (String(repeating: "r", count: 129), false), ("a b", false), ("x\"y", false), ("é", false),
    ])
    func requestIDs(header: String, kept: Bool) async throws {
        let gateway = try await InProcessGateway()
        let response = await gateway.send(.POST, "/users", headers: [("X-Request-ID", header)], body: "{}")
        let id = try #require(response.headers.first(name: "X-Request-ID"))
        #expect((id == header) == kept)
        #expect(gateway.services.sent.first?.envelope.correlationID == id)
    }

    @Test("POST /auth/token turns the user service's answer into a token the gateway accepts")
    func issuesToken() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"\#(Self.alice)","role":"admin"}"#) })
        let response = await gateway.send(.POST, "/auth/token", body: #"{"email":"a@example.com","password":"secret"}"#)
        #expect(response.status == 200)
        let token = try #require(response.json["access_token"] as? String)
        #expect(response.json["token_type"] as? String == "Bearer")
        let caller = try await gateway.tokens.verify(authorization: "Bearer \(token)")
        #expect(caller == Caller(subject: Self.alice, isAdmin: true))
    }

    @Test("a user service answer without id and role gives no token (500)", arguments: [#"{"id":"x"}"#, #"{"role":"user"}"#, "[]", "{}"])
    func noTokenWithoutUser(reply: String) async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(reply) })
        let response = await gateway.send(.POST, "/auth/token", body: #"{"email":"a@example.com","password":"secret"}"#)
        #expect(response.status == 500)
        #expect(response.json["access_token"] == nil)
    }

    // MARK: - The connection pipeline, without a socket

    @Test("raw requests through the HTTP pipeline: routed, refused and malformed ones get the JSON error")
    func embeddedPipeline() async throws {
        let gateway = try await InProcessGateway(FakeServices { _ in FakeServices.reply(#"{"id":"\#(Self.alice)"}"#) })
        let token = try await gateway.token(Self.alice)
        // Verified once here, so that the pipeline's request takes the path without a task.
        _ = await gateway.send(.GET, "/users/\(Self.alice)", token: token)
        let cases: [(String, Int, String?)] = [
            ("GET /users/\(Self.alice) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\n\r\n", 200, nil),
            ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
            ("PUT /users HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed"),
            ("GET /users/\(Self.alice) HTTP/1.1\r\nHost: x\r\n\r\n", 401, "unauthorized"),
            ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n", 413, "payload_too_large"),
            ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{", 400, "invalid"),
            ("GARBAGE\r\n\r\n", 400, nil),
            ("GET /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, nil),
            ("GET /" + String(repeating: "u", count: 20_000) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, nil),
        ]
        for (request, status, code) in cases {
            let answer = try EmbeddedGateway.exchange(gateway, [request])[0]
            #expect(EmbeddedGateway.status(answer) == status, "\(request.prefix(40))")
            if let code {
                #expect((EmbeddedGateway.json(answer)["error"] as? [String: Any])?["code"] as? String == code, "\(request.prefix(40))")
            }
        }
        #expect(gateway.services.operations == ["users.get", "users.get"])
    }

    /// The responses in `text`, in order: status, headers (names in lower case) and body, each
    /// cut at its Content-Length (a response without one ends the text).
    static func responses(_ text: String) -> [(status: Int, headers: [String: String], body: String)] {
        var rest = Substring(text)
        var out: [(Int, [String: String], String)] = []
        while let end = rest.range(of: "\r\n\r\n") {
            let lines = rest[..<end.lowerBound].components(separatedBy: "\r\n")
            guard let status = EmbeddedGateway.status(lines[0]) else { break }
            var headers: [String: String] = [:]
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            rest = rest[end.upperBound...]
            let length = headers["content-length"].flatMap { Int($0) } ?? rest.utf8.count
            let body = String(decoding: rest.utf8.prefix(length), as: UTF8.self)
            out.append((status, headers, body))
            rest = Substring(String(decoding: rest.utf8.dropFirst(length), as: UTF8.self))
        }
        return out
    }

    /// Requests of every form and method that could leave a connection hanging or an answer
    /// without its body: each is (request, statuses answered, closed after).
    static let requestForms: [(String, [Int], Bool)] = [
        ("CONNECT /users HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [405], true),
        ("CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [404], true),
        ("CONNECT /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", [405], true),
        ("CONNECT /users HTTP/1.0\r\n\r\n", [405], true),
        ("GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [200], true),
        ("GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", [404], true),
        ("GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [404], true),
        ("POST /users HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", [201], true),
        ("BREW /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [400], true),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [400], true),
        ("GET http://x/health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [200, 200], false),
        ("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [404, 200], false),
        ("OPTIONS /users HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [405, 200], false),
        ("TRACE /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n", [405, 200], false),
    ]

    @Test("CONNECT, Upgrade, unknown methods and every request-target form: the JSON error with its length, and no hang", arguments: 0..<14)
    func requestForms(index: Int) async throws {
        #expect(Self.requestForms.count == 14)
        let (request, statuses, closes) = Self.requestForms[index]
        let gateway = try await InProcessGateway()
        let (answers, closed) = try EmbeddedGateway.session(gateway, [request])
        let responses = Self.responses(answers[0])
        #expect(responses.map(\.status) == statuses, "\(request.prefix(50))\n\(answers[0])")
        #expect(closed == closes, "\(request.prefix(50))")
        for (position, response) in responses.enumerated() {
            #expect(response.headers["content-length"] == "\(response.body.utf8.count)")
            if closes, position == responses.count - 1 { #expect(response.headers["connection"] == "close") }
            guard response.status >= 400 else { continue }
            let error = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8))) as? [String: Any]
            let requestID = (error?["error"] as? [String: Any])?["requestId"] as? String
            #expect(requestID != nil && requestID == response.headers["x-request-id"], "\(request.prefix(50)): \(response.body)")
        }
    }

    @Test("a Transfer-Encoding other than exactly one chunked is 400 with the JSON error, and nothing is sent", arguments: [
        "gzip, chunked", "chunked, chunked", "deflate,chunked", "identity", "chunked;q=1", "x-custom, chunked", "gzip",
    ])
    func transferEncodings(encoding: String) async throws {
        let gateway = try await InProcessGateway()
        for headers in ["Transfer-Encoding: \(encoding)\r\n", "Transfer-Encoding: \(encoding)\r\nTransfer-Encoding: chunked\r\n"] {
            let request = "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\(headers)\r\n2\r\n{}\r\n0\r\n\r\n"
            let (answers, closed) = try EmbeddedGateway.session(gateway, [request])
            let responses = Self.responses(answers[0])
            #expect(responses.map(\.status) == [400], "\(headers)")
            #expect(closed)
            let error = (EmbeddedGateway.json(answers[0])["error"] as? [String: Any]) ?? [:]
            #expect(error["code"] as? String == "invalid")
            #expect((error["message"] as? String)?.contains("Transfer-Encoding") == true, "\(error)")
        }
        let twice = "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        #expect(EmbeddedGateway.status(try EmbeddedGateway.exchange(gateway, [twice])[0]) == 400)
        #expect(gateway.services.sent.isEmpty)
        for chunked in ["chunked", "Chunked", " chunked "] {
            let good = "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding:\(chunked)\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
            #expect(EmbeddedGateway.status(try EmbeddedGateway.exchange(gateway, [good])[0]) == 201, "\(chunked)")
        }
    }

    /// `Host` lines (RFC 9112 §3.2: exactly one on HTTP/1.1, never two, a host with an optional
    /// port or empty) and `Expect` lines (one value other than 100-continue, on any line, is
    /// 417): each request with the status it gets.
    static let hostAndExpect: [(String, Int)] = [
        ("GET /health HTTP/1.1\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a:http\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: [zz]:80\r\n\r\n", 400),
        ("POST /users HTTP/1.1\r\nHost: a b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 400),
        ("GET /health HTTP/1.1\r\nHost: [:]\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: [:::::::::]\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: [1.2.3.4]\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: [fe80::1%eth0]\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: [v1.]\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: %\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a%\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: ex%zzample.com\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: a.com:8a\r\n\r\n", 400),
        ("GET /health HTTP/1.1\r\nHost: \r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: a.com \r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: a.com\t\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: a.com:\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: A.Example.COM.\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: ex%41mple.com\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: [fe80::1%25eth0]:80\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: [::ffff:192.0.2.1]\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: [v1.fe80::a+en1]\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n", 200),
        ("GET /health HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n", 200),
        ("GET /health HTTP/1.0\r\n\r\n", 200),
        ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\nExpect: foo\r\n\r\n", 417),
        ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: foo\r\nExpect: 100-continue\r\n\r\n", 417),
        ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue, foo\r\n\r\n", 417),
        // Empty list elements are ignored (RFC 9110 §5.6.1.2): 100 Continue, then the body is read.
        ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue, \r\n\r\n{}", 100),
        ("POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: , 100-continue\r\n\r\n{}", 100),
    ]

    @Test("Host: exactly one on HTTP/1.1, none twice, a host and port (or empty) as RFC 3986 has it; Expect: any value but 100-continue on any line is 417")
    func hostAndExpectLines() async throws {
        let gateway = try await InProcessGateway()
        for (request, status) in Self.hostAndExpect {
            let (answers, closed) = try EmbeddedGateway.session(gateway, [request])
            let answer = answers[0]
            // The answer's version is the request's (HTTP/1.0 or 1.1).
            let answered = answer.hasPrefix("HTTP/1.") ? Int(answer.dropFirst(9).prefix(3)) : nil
            #expect(answered == status, "\(request.debugDescription)\n\(answer)")
            guard status >= 400 else { continue }
            let error = (EmbeddedGateway.json(answer)["error"] as? [String: Any]) ?? [:]
            #expect(error["code"] as? String == (status == 417 ? "expectation_failed" : "invalid"), "\(request.debugDescription)")
            if status == 400 { #expect((error["message"] as? String)?.contains("Host") == true, "\(request.debugDescription): \(error)") }
            #expect(closed, "\(request.debugDescription): closed after the refusal")
        }
        // Only the two requests with 100-continue and an empty list element were sent on.
        #expect(gateway.services.operations == ["users.create", "users.create"])
    }

    @Test("keep-alive requests on one connection are each answered in turn")
    func embeddedKeepAlive() async throws {
        let gateway = try await InProcessGateway()
        let answers = try EmbeddedGateway.exchange(gateway, [
            "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            "DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n",
        ])
        #expect(answers.map(EmbeddedGateway.status) == [404, 201, 405])
        #expect(gateway.services.operations == ["users.create"])
    }
}
