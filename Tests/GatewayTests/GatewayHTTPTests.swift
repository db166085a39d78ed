import Crypto
import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenGateway
import WarrenTestSupport

/// A contract of the tests' own: routes to a stand-in service `test` that echoes, sleeps and
/// fails on demand. The gateway reads it exactly as it reads schemas/openapi.yaml.
let testContract = """
    openapi: 3.1.0
    info: {title: Gateway test contract, version: '1'}
    paths:
      /echo:
        post:
          operationId: postEcho
          x-warren-operation: test.echo
          x-warren-auth: public
          requestBody: {content: {application/json: {}}}
          responses: {'201': {description: echoed}}
      /items/{id}:
        get:
          operationId: getItemsId
          x-warren-operation: test.echo
          x-warren-auth: public
          parameters:
            - {name: id, in: path, required: true, schema: {type: string}}
            - {name: limit, in: query, schema: {type: integer}}
      /slow:
        get:
          operationId: getSlow
          x-warren-operation: test.sleep
          x-warren-auth: public
          x-warren-timeout-ms: 700
      /fail/{code}:
        get:
          operationId: getFailCode
          x-warren-operation: test.fail
          x-warren-auth: public
          parameters: [{name: code, in: path, required: true, schema: {type: string}}]
      /stopped:
        get:
          operationId: getStopped
          x-warren-operation: stopped.get
          x-warren-auth: public
      /missing:
        get:
          operationId: getMissing
          x-warren-operation: missing.get
          x-warren-auth: public
      /mine/{id}:
        get:
          operationId: getMineId
          x-warren-operation: test.echo
          x-warren-auth: user
          x-warren-self: id
          parameters: [{name: id, in: path, required: true, schema: {type: string}}]
      /admin:
        get:
          operationId: getAdmin
          x-warren-operation: test.echo
          x-warren-auth: admin
      /owned/{owner}:
        get:
          operationId: getOwnedOwner
          x-warren-operation: test.owned
          x-warren-auth: user
          x-warren-owner: {field: owner}
          parameters: [{name: owner, in: path, required: true, schema: {type: string}}]
      /stamp:
        post:
          operationId: postStamp
          x-warren-operation: test.echo
          x-warren-auth: user
          x-warren-subject: userId
          requestBody: {content: {application/json: {}}}
    """

/// What the stand-in service saw of a request: the body, and the envelope the gateway built.
struct Seen: Codable, Sendable {
    var body: [String: String]?
    var correlationID: String
    var traceparent: String?
    var deadlineInMilliseconds: Int?
}

struct Anything: Decodable, Sendable {
    var fields: [String: String]

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let values = (try? container.decode([String: Field].self)) ?? [:]
        fields = values.mapValues(\.text)
    }

    /// Strings, numbers and booleans, as text: enough to compare what went in.
    struct Field: Decodable {
        var text: String
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let string = try? container.decode(String.self) {
                text = string
            } else if let number = try? container.decode(Int.self) {
                text = String(number)
            } else if let flag = try? container.decode(Bool.self) {
                text = String(flag)
            } else {
                text = "?"
            }
        }
    }
}

struct Code: Decodable, Sendable { var code: String }

/// A vhost with the stand-in service `test` and a gateway reading `testContract`.
final class StandIn: Sendable {
    let vhost: TestVhost
    let connection: AMQPConnection
    let gateway: GatewayProcess
    private let task: Mutex<Task<Void, any Error>?> = Mutex(nil)

    init(environment: [String: String] = [:], openAPI: String = testContract) async throws {
        vhost = try TestVhost.create("gateway")
        connection = try await AMQPConnection.connect(url: vhost.url, connectionName: "gateway-test-standin")
        var handlers = RPCHandlers()
        handlers.on("test.echo", Anything.self) { request, context in
            Seen(
                body: request.fields, correlationID: context.envelope.correlationID, traceparent: context.envelope.traceparent,
                deadlineInMilliseconds: context.envelope.deadline.map { Int($0.timeIntervalSinceNow * 1000) })
        }
        handlers.on("test.owned", Anything.self) { request, _ in request.fields }
        handlers.on("test.sleep", Anything.self) { _, _ -> Seen in
            try await Task.sleep(for: .seconds(3))
            return Seen(correlationID: "late")
        }
        handlers.on("test.fail", Code.self) { request, _ -> Seen in
            guard let code = ServiceError.Code(rawValue: request.code) else { throw ServiceError.invalid("no code \(request.code)") }
            throw ServiceError(code, "failed with \(request.code) on purpose")
        }
        let responder = RPCResponder(
            service: "test", connection: connection, handlers: handlers, configuration: .init(prefetch: 500, concurrency: 500))
        let group = ServiceGroup(services: [responder], gracefulShutdownSignals: [], logger: Logger(label: "test"))
        task.withLock { $0 = Task { try await group.run() } }
        // `stopped.rpc` exists but nobody consumes it: a service that was stopped.
        let channel = try await connection.openChannel()
        try await channel.declareQueue("stopped.rpc")
        for _ in 0..<200 {
            if let info = try? await channel.inspectQueue("test.rpc"), info.consumerCount > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        await channel.close()
        gateway = try GatewayProcess(vhost: vhost, openAPI: openAPI, environment: environment)
        try await gateway.waitUntilReady()
    }

    func close() async {
        await gateway.stop()
        task.withLock { $0?.cancel() }
        await connection.close()
        vhost.delete()
    }
}

/// Runs `body` with a fresh stand-in and gateway, removed afterwards whatever happens.
func withStandIn(environment: [String: String] = [:], openAPI: String = testContract, _ body: (StandIn) async throws -> Void) async throws {
    let standIn = try await StandIn(environment: environment, openAPI: openAPI)
    do {
        try await body(standIn)
    } catch {
        await standIn.close()
        throw error
    }
    await standIn.close()
}

func token(subject: String, role: String = "user", secret: String = testSecret, now: Date = Date()) async throws -> String {
    try await TokenAuthority(secret: secret, lifetime: .seconds(60)).issue(subject: subject, role: role, now: now)
}

func base64URL(_ data: some DataProtocol) -> String {
    Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

@Suite("Gateway over HTTP, against a stand-in service", .serialized, .timeLimit(.minutes(3)))
struct GatewayHTTPTests {
    @Test("X-Request-ID and traceparent reach the service; the request id comes back; parameters are typed")
    func correlation() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            let result = try await gateway.request(
                "GET", "/items/abc?limit=5", headers: ["X-Request-ID": "req-correlation-1", "traceparent": traceparent])
            #expect(result.status == 200)
            #expect(result.header("X-Request-ID") == "req-correlation-1")
            let seen = try JSONDecoder().decode(Seen.self, from: result.body)
            #expect(seen.correlationID == "req-correlation-1")
            #expect(seen.traceparent == traceparent)
            #expect(seen.body == ["id": "abc", "limit": "5"])
            #expect((seen.deadlineInMilliseconds ?? 0) > 3000 && (seen.deadlineInMilliseconds ?? 0) <= 5000, "the route's 5 s deadline")

            let generated = try await gateway.request("POST", "/echo", json: ["text": "hi"])
            #expect(generated.status == 201, "the first 2xx the contract lists")
            let id = try #require(generated.header("X-Request-ID"))
            #expect(UUID(uuidString: id) != nil)
            #expect(try JSONDecoder().decode(Seen.self, from: generated.body).correlationID == id)
            #expect(gateway.process.logLines.contains { $0["msg"] as? String == "request" && $0["correlation_id"] as? String == id })

            let bad = try await gateway.request("GET", "/items/abc?limit=ten")
            #expect(bad.status == 400)
            #expect(bad.error["message"] as? String == "query parameter 'limit' must be an integer, not 'ten'")
            #expect(bad.error["requestId"] as? String == bad.header("X-Request-ID"))
        }
    }

    @Test("every error code of a reply maps to its status with a JSON body")
    func errorMapping() async throws {
        try await withStandIn { standIn in
            let table: [(String, Int)] = [
                ("invalid", 400), ("unauthorized", 401), ("forbidden", 403), ("not_found", 404), ("conflict", 409),
                ("internal", 500), ("unavailable", 503), ("timeout", 504),
            ]
            for (code, status) in table {
                let result = try await standIn.gateway.request("GET", "/fail/\(code)", headers: ["X-Request-ID": "map-\(code)"])
                #expect(result.status == status, "\(code)")
                #expect(result.header("Content-Type") == "application/json")
                #expect(result.error["code"] as? String == code)
                #expect(result.error["message"] as? String == "failed with \(code) on purpose")
                #expect(result.error["requestId"] as? String == "map-\(code)")
            }
        }
    }

    @Test("a stuck service is 504 at the route's deadline; a stopped one 504 (outcome unknown) and a missing one 503, at once")
    func deadlines() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            var started = ContinuousClock.now
            let slow = try await gateway.request("GET", "/slow")
            let slowTook = ContinuousClock.now - started
            #expect(slow.status == 504)
            #expect(slow.error["code"] as? String == "timeout")
            #expect(slowTook >= .milliseconds(650) && slowTook < .milliseconds(2000), "deadline 700 ms, took \(slowTook)")

            started = ContinuousClock.now
            let stopped = try await gateway.request("GET", "/stopped")
            let stoppedTook = ContinuousClock.now - started
            #expect(stopped.status == 504, "queued: it would run if the service came back before its deadline")
            #expect(stoppedTook < .milliseconds(2000), "took \(stoppedTook)")

            started = ContinuousClock.now
            let missing = try await gateway.request("GET", "/missing")
            #expect(missing.status == 503)
            #expect((missing.error["message"] as? String ?? "").contains("does not exist"))
            #expect(ContinuousClock.now - started < .milliseconds(1000))
        }
    }

    @Test("unknown route 404, wrong method 405, too large 413, not JSON 415, malformed 400: all JSON")
    func httpErrors() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            let unknown = try await gateway.request("GET", "/nowhere")
            #expect(unknown.status == 404)
            #expect(unknown.error["code"] as? String == "not_found")

            let wrongMethod = try await gateway.request("PUT", "/echo", json: ["a": "b"])
            #expect(wrongMethod.status == 405)
            #expect(wrongMethod.header("Allow") == "POST")
            #expect(wrongMethod.error["code"] as? String == "method_not_allowed")

            let large = Data(#"{"text":""#.utf8) + Data(repeating: UInt8(ascii: "x"), count: 1 << 20) + Data(#""}"#.utf8)
            let tooLarge = try await gateway.request("POST", "/echo", body: large, contentType: "application/json")
            #expect(tooLarge.status == 413)
            #expect(tooLarge.error["code"] as? String == "payload_too_large")

            let text = try await gateway.request("POST", "/echo", body: Data("hello".utf8), contentType: "text/plain")
            #expect(text.status == 415)
            #expect(text.error["code"] as? String == "unsupported_media_type")

            let malformed = try await gateway.request("POST", "/echo", body: Data(#"{"text": "#.utf8), contentType: "application/json")
            #expect(malformed.status == 400)
            #expect(malformed.error["message"] as? String == "the body must be a JSON object")

            let charset = try await gateway.request("POST", "/echo", body: Data(#"{"a":"b"}"#.utf8), contentType: "application/json; charset=utf-8")
            #expect(charset.status == 201)
        }
    }

    @Test("tokens: alg none, wrong algorithm, wrong signature, expired, malformed are 401; self and admin rules")
    func tokens() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            let me = UUID().uuidString.lowercased()
            let good = try await token(subject: me)
            let payload = base64URL(Data(#"{"sub":"\#(me)","role":"admin","exp":\#(Int(Date().timeIntervalSince1970) + 600)}"#.utf8))

            let none = base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "." + payload + "."
            let rs256Header = base64URL(Data(#"{"alg":"RS256","typ":"JWT"}"#.utf8))
            // Algorithm confusion: an RS256 header, signed with the HMAC secret.
            let mac = HMAC<SHA256>.authenticationCode(for: Data("\(rs256Header).\(payload)".utf8), using: SymmetricKey(data: Data(testSecret.utf8)))
            let confused = "\(rs256Header).\(payload).\(base64URL(Data(mac)))"
            let forged = try await token(subject: me, role: "admin", secret: "another-secret-another-secret-another-secret")
            let expired = try await token(subject: me, now: Date() - 3600)
            let attacks: [(String, String?)] = [
                ("no token", nil), ("alg none", none), ("RS256 header", confused), ("wrong signature", forged), ("expired", expired),
                ("malformed", "not.a.jwt"), ("two parts", "abc.def"), ("garbage", "🙂"),
            ]
            for (name, attack) in attacks {
                let result = try await gateway.request("GET", "/mine/\(me)", token: attack)
                #expect(result.status == 401, "\(name)")
                #expect(result.error["code"] as? String == "unauthorized", "\(name)")
                #expect(result.header("WWW-Authenticate") == "Bearer", "\(name)")
            }
            let wrongScheme = try await gateway.request("GET", "/mine/\(me)", headers: ["Authorization": "Basic \(good)"])
            #expect(wrongScheme.status == 401)

            #expect(try await gateway.request("GET", "/mine/\(me)", token: good).status == 200)
            let other = try await gateway.request("GET", "/mine/\(UUID().uuidString.lowercased())", token: good)
            #expect(other.status == 403)
            #expect(other.error["code"] as? String == "forbidden")
            #expect(try await gateway.request("GET", "/admin", token: good).status == 403)
            let admin = try await token(subject: UUID().uuidString.lowercased(), role: "admin")
            #expect(try await gateway.request("GET", "/admin", token: admin).status == 200)
            #expect(try await gateway.request("GET", "/mine/\(me)", token: admin).status == 200, "an admin may act on anyone")

            // Ownership of the reply: someone else's resource is reported as missing.
            #expect(try await gateway.request("GET", "/owned/\(me)", token: good).status == 200)
            let foreign = try await gateway.request("GET", "/owned/someone-else", token: good)
            #expect(foreign.status == 404)
            #expect(try await gateway.request("GET", "/owned/someone-else", token: admin).status == 200)

            // The subject goes into the body, whatever the client claims.
            let stamped = try await gateway.request("POST", "/stamp", json: ["userId": "someone-else", "note": "n"], token: good)
            #expect(stamped.status == 200)
            let seen = try JSONDecoder().decode(Seen.self, from: stamped.body)
            #expect(seen.body == ["userId": me, "note": "n"])
        }
    }

    @Test("1,000 concurrent requests each get their own reply")
    func noCrossTalk() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        let result = try await gateway.request(
                            "POST", "/echo", json: ["n": "\(index)"], headers: ["X-Request-ID": "flood-\(index)"])
                        guard result.status == 201, let seen = try? JSONDecoder().decode(Seen.self, from: result.body) else { return 1 }
                        let ok = seen.body == ["n": "\(index)"] && seen.correlationID == "flood-\(index)"
                            && result.header("X-Request-ID") == "flood-\(index)"
                        return ok ? 0 : 1
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(mismatches == 0)
        }
    }

    @Test("rate limit: past the burst, 429 with Retry-After; CORS for allowed origins only")
    func rateLimitAndCORS() async throws {
        let environment = ["RATE_LIMIT_PER_SECOND": "0.5", "RATE_LIMIT_BURST": "3", "CORS_ORIGINS": "https://app.example"]
        try await withStandIn(environment: environment) { standIn in
            let gateway = standIn.gateway
            var statuses: [Int] = []
            var last: GatewayProcess.HTTPResult?
            for _ in 0..<4 {
                let result = try await gateway.request("GET", "/items/x", headers: ["Origin": "https://app.example"])
                statuses.append(result.status)
                last = result
            }
            #expect(statuses == [200, 200, 200, 429])
            let limited = try #require(last)
            #expect(limited.error["code"] as? String == "rate_limited")
            #expect(Int(limited.header("Retry-After") ?? "") == 2)
            #expect(limited.header("Access-Control-Allow-Origin") == "https://app.example")

            let preflight = try await gateway.request(
                "OPTIONS", "/echo", headers: ["Origin": "https://app.example", "Access-Control-Request-Method": "POST"])
            #expect(preflight.status == 204)
            #expect(preflight.header("Access-Control-Allow-Methods")?.contains("POST") == true)
            let stranger = try await gateway.request("OPTIONS", "/echo", headers: ["Origin": "https://evil.example"])
            #expect(stranger.header("Access-Control-Allow-Origin") == nil)
        }
    }

    @Test("SIGTERM drains: requests in flight are answered, then the gateway exits 0")
    func drain() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            // /slow takes until its 700 ms deadline; SIGTERM lands while it waits.
            async let answer = gateway.request("GET", "/slow")
            try await Task.sleep(for: .milliseconds(250))
            kill(gateway.process.pid, SIGTERM)
            let result = try await answer
            #expect(result.status == 504, "the request in flight got its answer, not a dropped connection")
            let status = await gateway.process.stop()
            #expect(status == 0)
            #expect(gateway.process.logLines.contains { $0["msg"] as? String == "stopped" })
        }
    }
}
