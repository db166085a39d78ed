import Foundation
import Testing
import WarrenTestSupport
@testable import WarrenGateway

/// The route table, the request-to-message translation and the rate limiter, without a server.
@Suite("Gateway pieces")
struct RouteTableTests {
    static let table: RouteTable = {
        let path = GatewayProcess.repository.appendingPathComponent("schemas/openapi.yaml").path
        let yaml = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return (try? RouteTable(openAPI: yaml)) ?? RouteTable(routes: [])
    }()

    /// What every test document starts with: OpenAPIKit requires `openapi` and `info`.
    static let header = "openapi: 3.1.0\ninfo: {title: test, version: '1'}\n"

    @Test("schemas/openapi.yaml gives every route the issue lists, with its operation and access")
    func contractRoutes() throws {
        let expected: [(String, String, String?, Route.Access)] = [
            ("POST", "/users", "users.create", .public), ("POST", "/auth/token", "users.authenticate", .public),
            ("GET", "/users/{id}", "users.get", .user), ("PATCH", "/users/{id}", "users.update", .user),
            ("DELETE", "/users/{id}", "users.delete", .user), ("GET", "/users", "users.list", .admin),
            ("POST", "/orders", "orders.create", .user), ("GET", "/orders/{id}", "orders.get", .user),
            ("GET", "/orders", "orders.list", .user), ("POST", "/orders/{id}/cancel", "orders.cancel", .user),
            ("GET", "/payments/{orderId}", "payments.get", .user), ("GET", "/events", "events.query", .admin),
            ("GET", "/events/flows/{correlationId}", "events.flow", .admin),
            ("GET", "/health", nil, .public), ("GET", "/metrics", nil, .public), ("GET", "/openapi.yaml", nil, .public),
            ("GET", "/docs", nil, .public), ("GET", "/docs/openapi.yaml", nil, .public), ("GET", "/docs/asyncapi.yaml", nil, .public),
        ]
        #expect(Self.table.routes.count == expected.count)
        for (method, path, operation, access) in expected {
            let route = try #require(Self.table.routes.first { $0.method == method && $0.path == path }, "\(method) \(path)")
            if let operation { #expect(route.target == .operation(operation)) }
            #expect(route.access == access, "\(method) \(path)")
        }
        #expect(Self.table.services == ["events", "orders", "payments", "users"])
        let create = try #require(Self.table.routes.first { $0.method == "POST" && $0.path == "/users" })
        #expect(create.successStatus == 201)
        let placeOrder = try #require(Self.table.routes.first { $0.method == "POST" && $0.path == "/orders" })
        #expect(placeOrder.subjectField == "userId")
        #expect(placeOrder.timeout == .seconds(10))
        let cancel = try #require(Self.table.routes.first { $0.path == "/orders/{id}/cancel" })
        #expect(cancel.ownership?.lookup == "orders.get")
    }

    @Test("matching: parameters, 405 with the allowed methods, 404")
    func matching() throws {
        guard case .found(let route, let parameters) = Self.table.match(method: "POST", path: "/orders/ab%20c/cancel") else {
            Issue.record("no match")
            return
        }
        #expect(route.path == "/orders/{id}/cancel")
        #expect(parameters == ["id": "ab c"])
        guard case .methodNotAllowed(let allowed) = Self.table.match(method: "PUT", path: "/users/42") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["DELETE", "GET", "PATCH"])
        if case .notFound = Self.table.match(method: "GET", path: "/users/42/extra") {} else { Issue.record("expected 404") }
        if case .notFound = Self.table.match(method: "GET", path: "/users/") {} else { Issue.record("an empty id must not match") }
    }

    static let aliasBomb = aliases(levels: 9)
    /// 9^6 = 531,441 nodes: under the bound of 2 million the gateway first had, under which an
    /// attacker's document of 1.87 million nodes held the start for 131 s.
    static let smallAliasBomb = aliases(levels: 6)

    /// Nine aliases of the level below on each of `levels` levels: 9^levels nodes.
    static func aliases(levels: Int) -> String {
        var yaml = "x-bomb:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for level in 1...levels {
            yaml += "  b\(level): &b\(level) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ", ") + "]\n"
            previous = "b\(level)"
        }
        return yaml + "paths: {/x: {get: {operationId: x, x-warren-operation: a.b}}}\n"
    }

    @Test(
        "a document the gateway cannot serve stops the start, naming the operation or OpenAPIKit's complaint",
        arguments: [
            ("paths: {/x: {get: {operationId: x, x-warren-auth: public}}}", "GET /x: needs x-warren-operation"),
            ("paths: {/x: {get: {x-warren-operation: a.b}}}", "GET /x: needs an operationId"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: nodot}}}", "must be <service>.<operation>"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-auth: everyone}}}", "x-warren-auth must be one of public, user, admin, not 'everyone'"),
            ("paths: {/x: {get: {operationId: x, x-warren-builtin: nothing}}}", "x-warren-builtin must be one of asyncapi, docs, health, metrics, openapi"),
            ("paths: {'/x/{id}': {get: {operationId: x, x-warren-operation: a.b}}}", "path parameter '{id}' is not declared"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-auth: public, x-warren-subject: userId}}}", "need a token"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: soon}}}", "x-warren-timeout-ms must be a plain decimal integer from 1 to 300000, not 'soon'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b}}, /y: {get: {operationId: x, x-warren-operation: a.b}}}", "not valid OpenAPI"),
            ("paths: {/x: {head: {operationId: x, x-warren-operation: a.b}}}", "GET, PUT, POST, PATCH and DELETE operations only"),
            // The bug the contract once had: an unquoted comma in a flow mapping makes a stray key.
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {'200': {description: a, b, c}}}}}", "not valid OpenAPI"),
            ("openapi: [", "not valid OpenAPI"),
            // Paths a request's path could never equal, and a document with nothing to serve.
            ("paths: {'/he alth': {get: {operationId: x, x-warren-operation: a.b}}}", "not a path the gateway can match"),
            ("paths: {'/x?y=1': {get: {operationId: x, x-warren-operation: a.b}}}", "not a path the gateway can match"),
            ("paths: {'/x#f': {get: {operationId: x, x-warren-operation: a.b}}}", "not a path the gateway can match"),
            ("paths: {'/caf\u{E9}': {get: {operationId: x, x-warren-operation: a.b}}}", "not a path the gateway can match"),
            ("paths: {'/\u{202E}x': {get: {operationId: x, x-warren-operation: a.b}}}", "not a path the gateway can match"),
            ("paths: {}", "declares no operations"),
            // x-warren-* values as written, not as YAML 1.1 reads them (yes is true, 0x10 is 16).
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-auth: yes}}}",
             "GET /x: x-warren-auth must be one of public, user, admin, not 'yes'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-auth: 'on'}}}", "x-warren-auth must be one of public, user, admin, not 'on' (quoted)"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-auth: [user]}}}", "x-warren-auth must be one of public, user, admin, not a list"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 0x10}}}",
             "GET /x: x-warren-timeout-ms must be a plain decimal integer from 1 to 300000, not '0x10'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 0o20}}}", "not '0o20'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 020}}}", "not '020'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: +100}}}", "not '+100'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 1_000}}}", "not '1_000'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 100.0}}}", "not '100.0'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 1e3}}}", "not '1e3'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: .inf}}}", "not '.inf'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 1:30}}}", "not '1:30'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: -5}}}", "not '-5'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 0}}}", "not '0'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 300001}}}", "not '300001'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 99999999999999999999}}}", "not '99999999999999999999'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: '100'}}}", "not '100' (quoted)"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: !!int 100}}}", "not !!int '100'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-token: yes}}}", "GET /x: x-warren-token must be true or false (unquoted), not 'yes'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-token: y}}}", "x-warren-token must be true or false (unquoted), not 'y'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-token: 'true'}}}", "not 'true' (quoted)"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-token: 1}}}", "not '1'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: true}}}", "GET /x: x-warren-operation must be a name, not 'true', which YAML reads as a boolean"),
            ("paths: {'/x/{id}': {get: {operationId: x, x-warren-operation: a.b, x-warren-self: 0x1f, parameters: [{name: id, in: path, required: true, schema: {type: string}}]}}}",
             "x-warren-self must be a name, not '0x1f', which YAML reads as a number"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-subject: ~}}}", "x-warren-subject must be a name, not '~', which YAML reads as null"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-subject: .nan}}}", "which YAML reads as a number"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, parameters: [{name: q, in: query, x-warren-field: off, schema: {type: string}}]}}}",
             "GET /x (at parameters.0): x-warren-field must be a name, not 'off', which YAML reads as a boolean"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-owner: {field: userId, lookup: 12}}}}",
             "x-warren-owner's lookup must be a name, not '12'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-owner: {field: userId, lookup: nodot}}}}",
             "GET /x: x-warren-owner's lookup 'nodot' must be <service>.<operation>"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-owner: {field: userId, lookups: a.get}}}}",
             "x-warren-owner takes field and lookup only, not 'lookups'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-owner: userId}}}", "x-warren-owner must be {field: <owner field>, lookup: <operation>?}, not 'userId'"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout: 100}}}", "GET /x: x-warren-timeout is not a field the gateway reads"),
            // A field where the gateway does not read it, which would be ignored.
            ("paths: {/x: {x-warren-auth: admin, get: {operationId: x, x-warren-operation: a.b}}}",
             "paths./x: x-warren-auth is read on an operation only (paths: /path: get: …); here it would be ignored"),
            (Self.header + "x-warren-auth: admin\npaths: {/x: {get: {operationId: x, x-warren-operation: a.b}}}", "the document's root: x-warren-auth is read on an operation only"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, x-warren-field: y}}}", "GET /x: x-warren-field is read on a parameter only"),
            // Through a YAML merge key: the form where the anchor is, the place where it is merged.
            (Self.header + "x-templates: {slow: &slow {x-warren-timeout-ms: 0x10}}\npaths: {/x: {get: {<<: *slow, operationId: x, x-warren-operation: a.b}}}",
             "x-templates.slow: x-warren-timeout-ms must be a plain decimal integer from 1 to 300000, not '0x10'"),
            (Self.header + "x-templates: {admin: &admin {x-warren-auth: admin}}\npaths: {/x: {<<: *admin, get: {operationId: x, x-warren-operation: a.b}}}",
             "paths./x: x-warren-auth is read on an operation only"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, parameters: [{name: q, in: query, x-warren-auth: public, schema: {type: string}}]}}}",
             "GET /x (at parameters.0): x-warren-auth is read on an operation only"),
            // Response keys: status codes as plain decimal strings (OpenAPIKit's Int(_:) takes +200).
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {!!int 200: {description: ok}}}}}",
             "GET /x: the responses key !!int 200 has a YAML tag; write the status code as a plain string key like \"200\""),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {+200: {description: ok}}}}}", "the responses key '+200' is not a status code"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {0200: {description: ok}}}}}", "the responses key '0200' is not a status code"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {'-1': {description: ok}}}}}", "the responses key '-1' is not a status code"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {999: {description: ok}}}}}", "the responses key '999' is not a status code"),
            ("paths: {/x: {get: {operationId: x, x-warren-operation: a.b, responses: {200/201: {description: ok}}}}}", "the responses key '200/201' is not a status code"),
            // An alias bomb: nine levels of nine aliases, 9^9 nodes from a few hundred bytes.
            (Self.aliasBomb, "expands to more than"),
            (Self.smallAliasBomb, "expands to more than 100000"),
        ])
    func badDocuments(yaml: String, message: String) {
        do {
            _ = try RouteTable(openAPI: yaml.hasPrefix("paths") ? Self.header + yaml : yaml)
            Issue.record("accepted: \(yaml)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }

    @Test("x-warren-* values and response keys at the edges of their forms are read as written")
    func edgeForms() throws {
        let yaml = Self.header + """
            x-templates: {admin: &admin {x-warren-auth: admin, x-warren-timeout-ms: 250}}
            paths:
              /x: {get: {operationId: x, x-warren-operation: a.b, x-warren-timeout-ms: 300000, x-warren-token: false,
                         parameters: [{$ref: '#/components/parameters/q'}],
                         responses: {'201': {description: c}, 2XX: {description: s}, default: {description: d}}}}
              /y: {get: {operationId: y, x-warren-operation: a.b, x-warren-timeout-ms: 1, x-warren-token: true, x-warren-auth: admin,
                         x-warren-owner: {field: "userId", lookup: 'users.get'}}}
              /z: {get: {<<: *admin, operationId: z, x-warren-operation: a.b}}
            components: {parameters: {q: {name: q, in: query, x-warren-field: query, schema: {type: string}}}}
            """
        let table = try RouteTable(openAPI: yaml)
        let x = try #require(table.routes.first { $0.path == "/x" })
        #expect(x.timeout == .seconds(300))
        #expect(!x.issuesToken)
        #expect(x.successStatus == 201)
        #expect(x.queryParameters.first?.field == "query")
        let y = try #require(table.routes.first { $0.path == "/y" })
        #expect(y.timeout == .milliseconds(1))
        #expect(y.issuesToken)
        #expect(y.access == .admin)
        #expect(y.ownership == Route.Ownership(field: "userId", lookup: "users.get"))
        // Merged from an anchor in another vendor extension, as YAMLDecoder merges it.
        let z = try #require(table.routes.first { $0.path == "/z" })
        #expect(z.access == .admin)
        #expect(z.timeout == .milliseconds(250))
    }

    @Test("path, query and subject become typed fields that win over the client's body")
    func messageBody() throws {
        let yaml = Self.header + """
            paths:
              /orders/{id}:
                post:
                  operationId: changeOrder
                  x-warren-operation: orders.change
                  x-warren-subject: userId
                  parameters:
                    - {name: id, in: path, required: true, schema: {type: string}}
                    - {name: limit, in: query, schema: {type: integer}}
                    - {name: dry, in: query, x-warren-field: dryRun, schema: {type: boolean}}
                  requestBody: {content: {application/json: {}}}
            """
        let route = try #require(try RouteTable(openAPI: yaml).routes.first)
        let data = try MessageBody.build(
            route: route, pathParameters: ["id": "o-\"1\""], query: [("limit", "7"), ("dry", "true")],
            body: Data(#"{"userId":"someone-else","note":"hi"}"#.utf8), subject: "me")
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["id"] as? String == "o-\"1\"")
        #expect(object["limit"] as? Int == 7)
        #expect(object["dryRun"] as? Bool == true)
        #expect(object["userId"] as? String == "me")
        #expect(object["note"] as? String == "hi")

        #expect(throws: GatewayError.invalid("query parameter 'limit' must be an integer, not 'ten'")) {
            try MessageBody.build(route: route, pathParameters: ["id": "1"], query: [("limit", "ten")], body: nil, subject: "me")
        }
        #expect(throws: GatewayError.invalid("unknown query parameter 'sort'; this route takes limit, dry")) {
            try MessageBody.build(route: route, pathParameters: ["id": "1"], query: [("sort", "x")], body: nil, subject: "me")
        }
        #expect(throws: GatewayError.invalid("the body must be a JSON object")) {
            try MessageBody.build(route: route, pathParameters: ["id": "1"], query: [], body: Data("[1,2".utf8), subject: "me")
        }
        // JSON in another encoding than UTF-8 is refused, also where the body would go out as sent.
        for (name, body) in HostileValues.otherEncodings(of: #"{"note":"hi"}"#) {
            for subject in ["me", nil] {
                let parameters = subject == nil ? [:] : ["id": "1"]
                #expect(throws: GatewayError.invalid("the body must be JSON in UTF-8"), "\(name)") {
                    try MessageBody.build(route: route, pathParameters: parameters, query: [], body: body, subject: subject)
                }
            }
        }
        // No field to add: the body goes out byte for byte.
        let plain = try #require(Self.table.routes.first { $0.method == "POST" && $0.path == "/users" })
        let sent = Data(#"{ "name" : "Ada" }"#.utf8)
        #expect(try MessageBody.build(route: plain, pathParameters: [:], query: [], body: sent, subject: nil) == sent)
        // A GET by id: written directly, control characters escaped.
        let get = try #require(Self.table.routes.first { $0.method == "GET" && $0.path == "/users/{id}" })
        let written = try MessageBody.build(route: get, pathParameters: ["id": "a\u{1}b"], query: [], body: nil, subject: "s")
        #expect(String(decoding: written, as: UTF8.self) == #"{"id":"a\u0001b"}"#)
    }

    @Test("request ids are distinct lowercase version 4 UUIDs")
    func requestIDs() throws {
        let ids = RequestIDs()
        let made = (0..<1_000).map { _ in ids.next() }  // several refills of the random pool (256 ids each)
        #expect(Set(made).count == made.count)
        for id in made {
            let uuid = try #require(UUID(uuidString: id), "\(id)")
            #expect(uuid.uuidString.lowercased() == id)
            #expect(Array(id.utf8)[14] == UInt8(ascii: "4"), "version 4: \(id)")
        }
    }

    @Test("token bucket: the burst, then one token per 1/rate seconds")
    func rateLimiter() {
        let limiter = RateLimiter(perSecond: 2, burst: 3)
        let start = ContinuousClock.now
        for _ in 0..<3 { #expect(limiter.acquire("1.2.3.4", now: start) == nil) }
        let wait = limiter.acquire("1.2.3.4", now: start)
        #expect(abs((wait ?? 0) - 0.5) < 0.01)
        #expect(limiter.acquire("5.6.7.8", now: start) == nil, "another client has its own bucket")
        #expect(limiter.acquire("1.2.3.4", now: start + .milliseconds(500)) == nil)
    }

    @Test("production without a real secret refuses to start, saying what to set")
    func productionSecret() throws {
        #expect(throws: GatewayConfigurationError.self) { try GatewayConfiguration(environment: ["WARREN_ENV": "production"]) }
        #expect(throws: GatewayConfigurationError.self) {
            try GatewayConfiguration(environment: ["WARREN_ENV": "production", "JWT_SECRET": TokenAuthority.developmentSecret])
        }
        do {
            _ = try GatewayConfiguration(environment: ["WARREN_ENV": "production", "JWT_SECRET": "short"])
            Issue.record("a 5-byte secret was accepted")
        } catch {
            #expect(error.description.contains("at least 32"))
        }
        let ok = try GatewayConfiguration(environment: ["WARREN_ENV": "production", "JWT_SECRET": testSecret])
        #expect(!ok.usesDevelopmentSecret)
        #expect(try GatewayConfiguration(environment: [:]).usesDevelopmentSecret)
        #expect(throws: GatewayConfigurationError.self) { try GatewayConfiguration(environment: ["RATE_LIMIT_PER_SECOND": "-1"]) }
    }
}
