import Foundation
import Glibc
import Testing
import WarrenGateway
import WarrenTestSupport

/// The HTTP edge as a client meets it, over raw sockets against a real gateway process: HEAD,
/// `Expect: 100-continue`, read timeouts, limits and malformed requests, pipelining, clients
/// that leave, and shutdown whatever clients do.
@Suite("Gateway HTTP edge over raw sockets", .serialized, .timeLimit(.minutes(3)))
struct GatewayHTTPEdgeTests {
    /// Every error the edge gives is the JSON error with the request id, also in `X-Request-ID`.
    func expectJSONError(_ response: RawHTTPConnection.Response?, _ status: Int, _ what: String) {
        guard let response else {
            Issue.record("\(what): no response")
            return
        }
        #expect(response.status == status, "\(what): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
        #expect(response.header("Content-Type") == "application/json", "\(what)")
        let requestID = response.error["requestId"] as? String
        #expect(requestID?.isEmpty == false, "\(what): a request id in the body")
        #expect(response.header("X-Request-ID") == requestID, "\(what): the same request id in X-Request-ID")
        #expect((response.error["message"] as? String)?.isEmpty == false, "\(what): a message")
    }

    @Test("every GET route answers HEAD with GET's status and headers and no body; HEAD /health is not 405")
    func head() async throws {
        let vhost = try TestVhost.create("gateway-head")
        defer { vhost.delete() }
        let gateway = try GatewayProcess(vhost: vhost)
        try await gateway.waitUntilReady()
        let document = try String(contentsOf: GatewayProcess.repository.appendingPathComponent("schemas/openapi.yaml"), encoding: .utf8)
        let routes = try RouteTable(openAPI: document).routes.filter { $0.method == "GET" }
        #expect(routes.count >= 8)
        let admin = try await token(subject: UUID().uuidString.lowercased(), role: "admin")
        for route in routes {
            let path = route.path.replacingOccurrences(of: #"\{[^}]+\}"#, with: UUID().uuidString.lowercased(), options: .regularExpression)
            var answers: [RawHTTPConnection.Response] = []
            for method in ["GET", "HEAD"] {
                let connection = try RawHTTPConnection(port: gateway.port)
                connection.send(
                    "\(method) \(path) HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer \(admin)\r\nX-Request-ID: head-\(route.path.count)\r\n\r\n")
                let response = await connection.responses(1, headRequests: method == "HEAD" ? [0] : [])
                #expect(response.count == 1, "\(method) \(path)")
                answers += response
            }
            guard answers.count == 2 else { continue }
            let (get, head) = (answers[0], answers[1])
            #expect(head.status == get.status, "HEAD \(path): \(head.status), GET: \(get.status)")
            #expect(head.status != 405, "HEAD \(path)")
            #expect(head.header("Content-Type") == get.header("Content-Type"), "HEAD \(path)")
            #expect(head.header("X-Request-ID") == get.header("X-Request-ID"), "HEAD \(path)")
            #expect(head.body.isEmpty, "HEAD \(path) has no body")
            // The metrics and the health check change between two requests; the rest must not.
            if route.target != .metrics, route.target != .health {
                #expect(head.header("Content-Length") == get.header("Content-Length"), "HEAD \(path): the length GET's body has")
            }
        }
        // What `curl -I` sends, and a HEAD on a route that has no GET: 405 naming GET and HEAD where they apply.
        let connection = try RawHTTPConnection(port: gateway.port)
        connection.send("HEAD /auth/token HTTP/1.1\r\nHost: test\r\n\r\n")
        let refused = await connection.responses(1, headRequests: [0])
        #expect(refused.first?.status == 405)
        #expect(refused.first?.header("Allow") == "POST")
        await gateway.stop()
    }

    @Test("Expect: 100-continue: 100 before the body is read; refused at once without it; 417 for other expectations")
    func expectContinue() async throws {
        try await withStandIn { standIn in
            let port = standIn.gateway.port
            let body = #"{"text":"hello"}"#
            let connection = try RawHTTPConnection(port: port)
            connection.send(
                "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nExpect: 100-continue\r\n\r\n")
            let interim = await connection.responses(1, timeout: 5)
            #expect(interim.first?.status == 100, "100 Continue before any body byte")
            connection.send(body)
            let final = await connection.responses(1)
            #expect(final.first?.status == 201)

            // Refused before the body: no token on a user route, too large by its length, no route.
            let refusals: [(String, Int)] = [
                ("POST /stamp HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 401),
                ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n", 413),
                ("POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 404),
                ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: teapot\r\n\r\n", 417),
            ]
            for (request, status) in refusals {
                let connection = try RawHTTPConnection(port: port)
                connection.send(request)
                let started = ContinuousClock.now
                let answer = await connection.responses(1, timeout: 5)
                expectJSONError(answer.first, status, request.prefix(20).description)
                #expect(ContinuousClock.now - started < .seconds(2), "answered at once, not after a body timeout")
                #expect(await connection.waitForClose(timeout: 5), "and the connection is closed")
            }
        }
    }

    @Test("read timeouts: a half-sent body and a half-sent head get 408 and are closed; an idle keep-alive connection is closed")
    func timeouts() async throws {
        let environment = ["HTTP_HEADER_TIMEOUT_SECONDS": "1", "HTTP_BODY_TIMEOUT_SECONDS": "1", "HTTP_IDLE_TIMEOUT_SECONDS": "1"]
        try await withStandIn(environment: environment) { standIn in
            let port = standIn.gateway.port
            let body = try RawHTTPConnection(port: port)
            body.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-Request-ID: slow-body\r\n\r\n{\"a\"")
            let started = ContinuousClock.now
            let bodyAnswer = await body.responses(1, timeout: 5)
            expectJSONError(bodyAnswer.first, 408, "half-sent body")
            #expect(bodyAnswer.first?.error["requestId"] as? String == "slow-body")
            #expect(ContinuousClock.now - started > .milliseconds(800), "not before the body timeout")
            #expect(await body.waitForClose(timeout: 3))

            let head = try RawHTTPConnection(port: port)
            head.send("GET /items/abc HTTP/1.1\r\nHost: t\r\n")
            expectJSONError(await head.responses(1, timeout: 5).first, 408, "half-sent head")
            #expect(await head.waitForClose(timeout: 3))

            let idle = try RawHTTPConnection(port: port)
            let idleStarted = ContinuousClock.now
            idle.send("GET /items/abc HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(await idle.responses(1).first?.status == 200)
            #expect(await idle.waitForClose(timeout: 5), "the idle connection is closed")
            #expect(ContinuousClock.now - idleStarted > .milliseconds(900), "not before the idle timeout (from the request on)")

            // A connection that never sends a byte is idle too.
            let silent = try RawHTTPConnection(port: port)
            #expect(await silent.waitForClose(timeout: 5))
        }
    }

    @Test("SIGTERM ends the gateway within DRAIN_TIMEOUT_SECONDS while clients hold half-sent requests")
    func drainWhateverClientsDo() async throws {
        let vhost = try TestVhost.create("gateway-drain")
        defer { vhost.delete() }
        let gateway = try GatewayProcess(vhost: vhost, openAPI: testContract, environment: ["DRAIN_TIMEOUT_SECONDS": "1"])
        try await gateway.waitUntilReady()
        var clients: [RawHTTPConnection] = []
        for index in 0..<5 {
            let client = try RawHTTPConnection(port: gateway.port)
            client.send(
                index % 2 == 0
                    ? "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\""
                    : "GET /items/abc HTTP/1.1\r\nHost: t\r\n")
            clients.append(client)
        }
        try await Task.sleep(for: .milliseconds(200))
        let started = ContinuousClock.now
        kill(gateway.process.pid, SIGTERM)
        let status = await gateway.process.stop(timeout: .seconds(10))
        #expect(ContinuousClock.now - started < .seconds(4), "ended within the drain timeout (1 s) and the broker's close")
        #expect(status == 0)
        for client in clients { #expect(await client.waitForClose(timeout: 2)) }
        await gateway.stop()
    }

    /// Malformed requests, each on its own connection: the JSON error, a request id, a close.
    static let malformed: [(String, String, Int)] = [
        ("a 100 KB header", "GET /items/a HTTP/1.1\r\nHost: t\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n", 431),
        ("a 100 KB URL", "GET /items/\(String(repeating: "a", count: 100_000)) HTTP/1.1\r\nHost: t\r\n\r\n", 414),
        ("5,000 headers", "GET /items/a HTTP/1.1\r\nHost: t\r\n" + (0..<5000).map { "X-H\($0): v\r\n" }.joined() + "\r\n", 431),
        ("an unknown method", "BREW /items/a HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("a bad version", "GET /items/a HTTP/7.3\r\nHost: t\r\n\r\n", 400),
        ("no version", "GET /items/a HTTQ\r\nHost: t\r\n\r\n", 400),
        ("bare LF line ends", "GET /items/a HTTP/1.1\nHost: t\n\n", 400),
        ("a bare CR in a header", "GET /items/a HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 400),
        ("NUL in a header", "GET /items/a HTTP/1.1\r\nHost: t\r\nX-A: a\u{0}b\r\n\r\n", 400),
        ("a space before the colon", "GET /items/a HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        ("two different Content-Lengths", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
        ("Content-Length with Transfer-Encoding", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400),
        ("a chunk size that is not hex", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
        ("a chunk size past 64 bits", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n{}\r\n0\r\n\r\n", 400),
        ("a negative Content-Length", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
        ("a control character in the URL", "GET /items/a\u{7}b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("a coding before chunked", "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400),
        ("CONNECT to a path, a request behind it", "CONNECT /items/a HTTP/1.1\r\nHost: t\r\n\r\nGET /items/a HTTP/1.1\r\nHost: t\r\n\r\n", 405),
        ("CONNECT to an authority", "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\nGET /items/a HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        ("no Host", "GET /items/a HTTP/1.1\r\n\r\n", 400),
        ("two Host lines", "GET /items/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("a Host with a space", "GET /items/a HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("a Host with a path, and a body", "POST /echo HTTP/1.1\r\nHost: a/b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 400),
        ("an Upgrade, a request behind it", "GET /nope HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /items/a HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    ]

    @Test("overlong URL and headers are 414/431, every malformed request a JSON 400, each with a request id, then a clean close")
    func malformedRequests() async throws {
        try await withStandIn { standIn in
            for (name, request, status) in Self.malformed {
                let connection = try RawHTTPConnection(port: standIn.gateway.port)
                // All of it is taken, also what comes after the error (the gateway reads on and
                // drops it), so a client that writes its whole request before reading gets the
                // answer, and the close is a FIN after it, not a reset that could drop it.
                #expect(connection.send(request + String(repeating: "x", count: 200_000)), "\(name): the whole request was taken")
                expectJSONError(await connection.responses(1, timeout: 5).first, status, name)
                #expect(await connection.waitForClose(timeout: 5), "\(name): closed after the answer")
                #expect(!connection.resetByPeer, "\(name): closed with a FIN, not a reset")
            }
            // The gateway still serves.
            #expect(try await standIn.gateway.request("GET", "/items/abc").status == 200)
        }
    }

    @Test("pipelined requests are answered in order; clients that leave mid-request cost only their own request")
    func pipeliningAndLeavers() async throws {
        try await withStandIn { standIn in
            let port = standIn.gateway.port
            let connection = try RawHTTPConnection(port: port)
            let body = #"{"text":"p4"}"#
            connection.send(
                "GET /items/one HTTP/1.1\r\nHost: t\r\nX-Request-ID: p1\r\n\r\n"
                    + "HEAD /items/two HTTP/1.1\r\nHost: t\r\nX-Request-ID: p2\r\n\r\n"
                    + "GET /nowhere HTTP/1.1\r\nHost: t\r\nX-Request-ID: p3\r\n\r\n"
                    + "POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-ID: p4\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                    + "GET /fail/conflict HTTP/1.1\r\nHost: t\r\nX-Request-ID: p5\r\n\r\n")
            let answers = await connection.responses(5, headRequests: [1])
            #expect(answers.map(\.status) == [200, 200, 404, 201, 409])
            #expect(answers.map { $0.header("X-Request-ID") ?? "" } == ["p1", "p2", "p3", "p4", "p5"])

            // Leavers: a half-sent head, a half-sent body, a whole request whose answer nobody reads.
            for index in 0..<30 {
                let leaver = try RawHTTPConnection(port: port)
                switch index % 3 {
                case 0: leaver.send("GET /items/x HTTP/1.1\r\nHost: t\r\n")
                case 1: leaver.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
                default: leaver.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
                }
                leaver.close()
            }
            for _ in 0..<5 {
                #expect(try await standIn.gateway.request("GET", "/items/abc").status == 200, "others are still served")
            }
            try await Task.sleep(for: .seconds(1))
            #expect(try await standIn.gateway.request("GET", "/items/abc").status == 200)
            let noisy = standIn.gateway.process.logLines.filter {
                let level = $0["level"] as? String ?? ""
                return (level == "error" || level == "critical" || level == "warning") && ($0["route"] as? String) != "/slow"
            }
            #expect(noisy.isEmpty, "no error lines for clients that left: \(noisy)")
        }
    }

    @Test("a client that half-closes after its request (FIN, as `nc -N` or an HTTP/1.0 tool) still gets every answer, then the close")
    func halfClosedClient() async throws {
        try await withStandIn { standIn in
            let port = standIn.gateway.port
            let body = #"{"text":"half"}"#
            let requests: [(String, [Int])] = [
                // Through the service (the answer comes after the FIN is read).
                ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", [201]),
                ("GET /items/abc HTTP/1.0\r\n\r\n", [200]),
                // Pipelined, then FIN: both answered in order.
                ("GET /items/one HTTP/1.1\r\nHost: t\r\n\r\nGET /fail/conflict HTTP/1.1\r\nHost: t\r\n\r\n", [200, 409]),
                // A request the gateway answers itself.
                ("GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n", [404]),
            ]
            for (request, statuses) in requests {
                let connection = try RawHTTPConnection(port: port)
                connection.send(request)
                connection.shutdownWrite()
                let answers = await connection.responses(statuses.count, timeout: 5)
                #expect(answers.map(\.status) == statuses, "\(request.prefix(30))")
                #expect(await connection.waitForClose(timeout: 3), "\(request.prefix(30)): closed after the answers")
            }
            // A half-closed connection with nothing sent, or half a head, is closed at once, unanswered.
            for request in ["", "GET /items/abc HTTP/1.1\r\nHo"] {
                let connection = try RawHTTPConnection(port: port)
                connection.send(request)
                connection.shutdownWrite()
                let started = ContinuousClock.now
                #expect(await connection.responses(1, timeout: 3).isEmpty)
                #expect(connection.closedByPeer)
                #expect(ContinuousClock.now - started < .seconds(2), "closed at once, not at a timeout")
            }
        }
    }

    @Test("half a head pipelined behind a whole request gets 408 at the head timeout, not a silent close at the idle timeout")
    func slowHeadBehindARequest() async throws {
        let environment = ["HTTP_HEADER_TIMEOUT_SECONDS": "1", "HTTP_IDLE_TIMEOUT_SECONDS": "20"]
        try await withStandIn(environment: environment) { standIn in
            let port = standIn.gateway.port
            // In the same packet as the whole request, and in a later one while it is answered.
            let sameRead = try RawHTTPConnection(port: port)
            let started = ContinuousClock.now
            sameRead.send("GET /items/one HTTP/1.1\r\nHost: t\r\n\r\nGET /items/two HTTP/1.1\r\nHo")
            let answers = await sameRead.responses(2, timeout: 8)
            #expect(answers.map(\.status) == [200, 408])
            #expect(ContinuousClock.now - started < .seconds(5), "at the head timeout (1 s), not the idle timeout (20 s)")
            #expect(await sameRead.waitForClose(timeout: 3))

            let laterRead = try RawHTTPConnection(port: port)
            laterRead.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            try await Task.sleep(for: .milliseconds(200))
            laterRead.send("GET /items/two HTTP/1.1\r\nHo")
            #expect(await laterRead.responses(2, timeout: 8).map(\.status) == [504, 408])
        }
    }

    @Test("what follows a request in the same packet never costs its answer: Connection: close, HTTP/1.0, garbage, a FIN")
    func answerBeforeWhatFollows() async throws {
        try await withStandIn { standIn in
            let port = standIn.gateway.port
            let body = #"{"text":"first"}"#
            func echo(_ id: String, _ extra: String = "", version: String = "1.1") -> String {
                "POST /echo HTTP/\(version)\r\nHost: t\r\n\(extra)Content-Type: application/json\r\nX-Request-ID: \(id)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            }
            let cases: [(String, String, [Int], Bool)] = [
                // The answer goes through the service (after the rest was read); what follows the
                // last request of the connection is not run.
                ("close", echo("c1", "Connection: close\r\n") + echo("c1-after"), [201], false),
                ("HTTP/1.0", echo("c2", version: "1.0") + echo("c2-after"), [201], false),
                ("garbage", echo("c3") + "NOT HTTP\r\n\r\n", [201, 400], false),
                ("FIN", echo("c4") + "GET /items/x HTTP/1.1\r\nHost: t\r\n\r\n", [201, 200], true),
            ]
            for (name, request, statuses, fin) in cases {
                let connection = try RawHTTPConnection(port: port)
                connection.send(request)
                if fin { connection.shutdownWrite() }
                let answers = await connection.responses(statuses.count, timeout: 5)
                #expect(answers.map(\.status) == statuses, "\(name)")
                #expect(await connection.waitForClose(timeout: 3), "\(name): closed after the answers")
            }
            try await Task.sleep(for: .milliseconds(300))
            let ran = Set(standIn.gateway.process.logLines.compactMap { $0["correlation_id"] as? String })
            #expect(ran.isSuperset(of: ["c1", "c2", "c3", "c4"]))
            #expect(ran.isDisjoint(with: ["c1-after", "c2-after"]), "nothing after the connection's last request runs")
        }
    }

    @Test("a request pipelined behind one refused before its body (404/413 by Expect or Content-Length) is not run")
    func nothingRunsAfterARefusal() async throws {
        try await withStandIn { standIn in
            let port = standIn.gateway.port
            let after = { (id: String) in
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nX-Request-ID: \(id)\r\nContent-Length: 2\r\n\r\n{}"
            }
            let big = String(repeating: "a", count: 1_100_000)
            let cases: [(String, Int)] = [
                ("POST /nowhere HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}" + after("r1-after"), 404),
                ("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: \(big.utf8.count)\r\n\r\n\(big)" + after("r2-after"), 413),
            ]
            for (request, status) in cases {
                let connection = try RawHTTPConnection(port: port)
                connection.send(request)
                let answers = await connection.responses(2, timeout: 3)
                #expect(answers.map(\.status) == [status], "only the refusal is answered")
                #expect(await connection.waitForClose(timeout: 3))
            }
            try await Task.sleep(for: .milliseconds(300))
            let ran = Set(standIn.gateway.process.logLines.compactMap { $0["correlation_id"] as? String })
            #expect(ran.isDisjoint(with: ["r1-after", "r2-after"]), "nothing after a refusal that closes the connection runs")
        }
    }

    @Test("parser refusals say what is wrong in the client's terms, not the parser's", arguments: [
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding"),
        ("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding"),
    ])
    func parserMessages(request: String, mentions: String) async throws {
        let vhost = try TestVhost.create("gateway-parser")
        defer { vhost.delete() }
        let gateway = try GatewayProcess(vhost: vhost, openAPI: testContract)
        try await gateway.waitUntilReady()
        let connection = try RawHTTPConnection(port: gateway.port)
        connection.send(request)
        let answer = await connection.responses(1, timeout: 5).first
        expectJSONError(answer, 400, mentions)
        let message = answer?.error["message"] as? String ?? ""
        #expect(message.contains(mentions), "\(message)")
        #expect(!message.contains("parser error"), "\(message)")
        await gateway.stop()
    }
}
