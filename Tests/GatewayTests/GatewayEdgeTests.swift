import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
@testable import WarrenGateway
import WarrenAMQP
import WarrenTestSupport

/// The gateway's trust and configuration rules, as pure values.
@Suite("Gateway configuration and header rules")
struct GatewayConfigurationTests {
    static let strongSecret = "kY3q9vZ2pL7wXr4tB8nM1cF6hJ0sD5gA"

    @Test("WARREN_ENV is read in any letter case; production refuses the development secret", arguments: [
        "production", "Production", "PRODUCTION", "prod", "Prod", " production ",
    ])
    func productionNames(name: String) throws {
        #expect(throws: GatewayConfigurationError.self) { try GatewayConfiguration(environment: ["WARREN_ENV": name]) }
        let configuration = try GatewayConfiguration(environment: ["WARREN_ENV": name, "JWT_SECRET": Self.strongSecret])
        #expect(configuration.environmentName == .production)
        #expect(!configuration.usesDevelopmentSecret)
    }

    @Test("an unknown environment name stops the start instead of meaning development", arguments: [
        "prodution", "staging", "live", "production2", "p", "\u{0}production", "production\u{0}", "yes",
    ])
    func unknownNames(name: String) {
        let error = #expect(throws: GatewayConfigurationError.self) {
            try GatewayConfiguration(environment: ["WARREN_ENV": name, "JWT_SECRET": Self.strongSecret])
        }
        #expect(error?.description.contains("WARREN_ENV") == true)
    }

    @Test("development and test names start with the development secret", arguments: ["", "development", "Dev", "DEV", "test", "Test"])
    func otherNames(name: String) throws {
        let configuration = try GatewayConfiguration(environment: ["WARREN_ENV": name])
        #expect(configuration.environmentName != .production)
        #expect(configuration.usesDevelopmentSecret)
    }

    /// Secrets production must refuse: short, few distinct bytes, the development secret in any spelling.
    static let weakSecrets: [String] = [
        "short-secret",
        String(repeating: "a", count: 64),
        String(repeating: "ab", count: 32),
        String(repeating: "password", count: 5),
        TokenAuthority.developmentSecret,
        TokenAuthority.developmentSecret.uppercased(),
        TokenAuthority.developmentSecret.lowercased(),
        TokenAuthority.developmentSecret.replacingOccurrences(of: "-", with: "_"),
        TokenAuthority.developmentSecret.replacingOccurrences(of: "-", with: " "),
        " " + TokenAuthority.developmentSecret + "\n",
        TokenAuthority.developmentSecret + "-2",
        "x" + TokenAuthority.developmentSecret,
        // Cut or pasted pieces of the published secret, and a short piece repeated.
        String(TokenAuthority.developmentSecret.dropLast()),
        "warren-DEVELOPMENT-ONLY-" + "9f2c4e1a7b3d5f60",
        "k3Q!zR8#" + "secret-do-not-use-in" + "-production-X7",
        String(TokenAuthority.developmentSecret.reversed()),
        String(repeating: "abcdefgh", count: 4),
        String(repeating: "0123456789abcdef", count: 3),
        // A repeated piece with a byte or two added, changed or cut: as weak as the piece.
        String(repeating: "abcdefgh", count: 4) + "X",
        "X" + String(repeating: "abcdefgh", count: 4),
        String(repeating: "password", count: 4) + "1",
        String(repeating: "password", count: 2) + "!" + String(repeating: "password", count: 2),
        String(repeating: "Passw0rd", count: 4) + "2024!",
        "0123456789abcdef" + "0123456Z89abcdef",
        String(String(repeating: "abcdefghij", count: 4).dropFirst(3)),
        "k" + String(repeating: "xY3!aB7?", count: 4) + "q",
        "Tr0ub4dor&3" + "Tr0ub4dor&3" + "-" + "Tr0ub4dor&3",
        "correcthorse" + "XY" + "correcthorse" + "42" + "correcthorse",
    ]

    /// `count` random characters of `alphabet`, from a seeded SplitMix64: the same on every run.
    static func randomSecrets(_ number: Int, count: Int, alphabet: String, seed: UInt64) -> [String] {
        let characters = Array(alphabet)
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return (0..<number).map { _ in String((0..<count).map { _ in characters[Int(next() % UInt64(characters.count))] }) }
    }

    @Test("production accepts every one of 10,000 random hex and base64 secrets of 32 to 64 characters", arguments: [
        (32, "0123456789abcdef"), (64, "0123456789abcdef"),
        (32, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
        (44, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"),
    ])
    func acceptsGeneratedSecrets(length: Int, alphabet: String) async throws {
        let secrets = Self.randomSecrets(2_500, count: length, alphabet: alphabet, seed: UInt64(length * alphabet.count))
        #expect(Set(secrets).count == secrets.count)
        for (index, secret) in secrets.enumerated() {
            // Other tests of the suite time themselves: leave them the cooperative threads.
            if index % 50 == 0 { await Task.yield() }
            #expect(GatewayConfiguration.nearPeriod(Array(secret.utf8)) == nil, "\(secret)")
            let (repeated, pieces) = GatewayConfiguration.repeatedPieces(Array(secret.utf8))
            #expect(repeated * 4 < pieces, "\(secret): \(repeated) of \(pieces)")
            #expect(throws: Never.self, "\(secret)") {
                try GatewayConfiguration.checkProductionSecret(secret, usesDevelopmentSecret: TokenAuthority.isDevelopmentSecret(secret))
            }
        }
    }

    @Test("a nearly repeated secret is refused naming the piece's length")
    func nearPeriodMessage() {
        let error = #expect(throws: GatewayConfigurationError.self) {
            try GatewayConfiguration(environment: ["WARREN_ENV": "production", "JWT_SECRET": String(repeating: "abcdefgh", count: 4) + "X"])
        }
        #expect(error?.description.contains("repeats a piece of 8 bytes") == true)
    }

    @Test("production accepts a random secret")
    func acceptsRandomSecret() throws {
        for secret in ["q8V2x0N6hLr4TzP1cWm9Ej3YbKs7Ud5G", "q8Vn3Lr0Tz5Yw1Jk4Hs7Ud2Fa6Gc9Bx-in-production"] {
            let configuration = try GatewayConfiguration(environment: ["WARREN_ENV": "production", "JWT_SECRET": secret])
            #expect(configuration.environmentName == .production)
            #expect(!configuration.usesDevelopmentSecret, "\(secret)")
        }
    }

    @Test("production refuses a weak JWT_SECRET", arguments: weakSecrets)
    func refusesWeakSecret(secret: String) {
        #expect(throws: GatewayConfigurationError.self) {
            try GatewayConfiguration(environment: ["WARREN_ENV": "production", "JWT_SECRET": secret])
        }
    }

    @Test("numbers in the environment: whole where whole, in range, never trapping", arguments: [
        ("HTTP_PORT", "80.5"), ("HTTP_PORT", "70000"), ("HTTP_PORT", "-1"), ("JWT_TTL_SECONDS", "1e300"), ("JWT_TTL_SECONDS", "nan"),
        ("RATE_LIMIT_PER_SECOND", "1e-300"), ("RATE_LIMIT_PER_SECOND", "inf"), ("RATE_LIMIT_PER_SECOND", "nan"), ("RATE_LIMIT_BURST", "-5"),
        ("HTTP_HEADER_TIMEOUT_SECONDS", "0"), ("HTTP_BODY_TIMEOUT_SECONDS", "nan"), ("HTTP_IDLE_TIMEOUT_SECONDS", "1e300"),
        ("DRAIN_TIMEOUT_SECONDS", "-1"), ("HTTP_THREADS", "0"), ("HTTP_THREADS", "1.5"),
    ])
    func numbers(name: String, value: String) {
        let error = #expect(throws: GatewayConfigurationError.self) { try GatewayConfiguration(environment: [name: value]) }
        #expect(error?.description.contains(name) == true)
    }

    @Test("HTTP timeouts: defaults, and decimal seconds from the environment")
    func httpTimeouts() throws {
        let defaults = try GatewayConfiguration(environment: [:])
        #expect(defaults.headerTimeout == .seconds(10) && defaults.bodyTimeout == .seconds(30) && defaults.idleTimeout == .seconds(60))
        #expect(defaults.drainTimeout == .seconds(10) && defaults.httpThreads == 1)
        let set = try GatewayConfiguration(environment: ["HTTP_BODY_TIMEOUT_SECONDS": "0.25", "DRAIN_TIMEOUT_SECONDS": "0"])
        #expect(set.bodyTimeout == .milliseconds(250))
        #expect(set.drainTimeout == .zero)
    }

    @Test("the rate limiter's waits stay finite at the lowest rate allowed")
    func slowestRate() {
        let limiter = RateLimiter(perSecond: 0.001, burst: 1_000_000, pruneAbove: 1)
        for client in 0..<3 { #expect(limiter.acquire("client-\(client)") == nil) }  // prunes without trapping
        let single = RateLimiter(perSecond: 0.001, burst: 1)
        #expect(single.acquire("a") == nil)
        let wait = single.acquire("a")
        #expect(wait.map { $0.isFinite && $0 > 0 } == true)
    }

    @Test("a health answer waits at most its budget for an inspection that hangs, and takes one that comes in time")
    func healthBudget() async {
        let hanging = Task<Int, Never> {
            try? await Task.sleep(for: .seconds(30))
            return 1
        }
        let started = ContinuousClock.now
        #expect(await GatewayHealth.value(of: hanging, within: .milliseconds(200)) == nil)
        let took = ContinuousClock.now - started
        #expect(took >= .milliseconds(190) && took < .seconds(1), "\(took): /health answers within 1 s")
        hanging.cancel()
        let quick = Task<Int, Never> { 7 }
        #expect(await GatewayHealth.value(of: quick, within: .seconds(5)) == 7)
    }

    @Test("traceparent is passed on only as a W3C trace context", arguments: [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\u{0}", false),
        ("00-4bf92f3577b34da6a3ce929d0e0e473\u{0}-00f067aa0ba902b7-01", false),
        (String(repeating: "0", count: 1_000), false),
        ("", false),
    ])
    func traceparent(header: String, kept: Bool) {
        #expect((GatewayResponder.traceparent(header) != nil) == kept)
    }
}

/// The stand-in's contract plus the gateway's own health and metrics routes.
let edgeContract = testContract + """

      /health:
        get:
          operationId: getHealth
          x-warren-builtin: health
          x-warren-auth: public
      /metrics:
        get:
          operationId: getMetrics
          x-warren-builtin: metrics
          x-warren-auth: public
    """

/// What the gateway does at its edges, against the stand-in service: ids in either case, health
/// when the broker stalls, and what the rate limit leaves alone.
@Suite("Gateway edges against a stand-in service", .serialized, .timeLimit(.minutes(3)))
struct GatewayEdgeTests {
    @Test("an id in another letter case is the caller's own: self and owner checks compare one form")
    func idCase() async throws {
        try await withStandIn { standIn in
            let gateway = standIn.gateway
            let me = UUID().uuidString.lowercased()
            let good = try await token(subject: me)
            for spelling in [me.uppercased(), me, String(me.prefix(18)).uppercased() + me.dropFirst(18)] {
                let mine = try await gateway.request("GET", "/mine/\(spelling)", token: good)
                #expect(mine.status == 200, "\(spelling): \(mine.text)")
                #expect(try JSONDecoder().decode(Seen.self, from: mine.body).body?["id"] == me, "the service gets the stored form")
                #expect(try await gateway.request("GET", "/owned/\(spelling)", token: good).status == 200, "\(spelling)")
            }
            // A token whose subject is in upper case (another issuer's habit) is the same caller.
            let upperToken = try await token(subject: me.uppercased())
            #expect(try await gateway.request("GET", "/mine/\(me)", token: upperToken).status == 200)
            let stamped = try await gateway.request("POST", "/stamp", json: ["userId": "someone"], token: upperToken)
            #expect(try JSONDecoder().decode(Seen.self, from: stamped.body).body?["userId"] == me, "the subject in its stored form")
            // Anything that is not the same UUID stays someone else's.
            for other in [UUID().uuidString, me + "%20", me + "%00", "%20" + me, me.replacingOccurrences(of: "-", with: "")] {
                let result = try await gateway.request("GET", "/mine/\(other)", token: good)
                #expect(result.status == 403, "\(other): \(result.status)")
            }
        }
    }

    @Test("/health and /metrics are never rate-limited; other routes are")
    func healthNotLimited() async throws {
        try await withStandIn(environment: ["RATE_LIMIT_PER_SECOND": "0.5", "RATE_LIMIT_BURST": "2"], openAPI: edgeContract) { standIn in
            let gateway = standIn.gateway
            for _ in 0..<8 {
                #expect(try await gateway.request("GET", "/health").status != 429)
                #expect(try await gateway.request("GET", "/metrics").status == 200)
            }
            var statuses: [Int] = []
            for _ in 0..<4 { statuses.append(try await gateway.request("GET", "/items/abc").status) }
            #expect(statuses.contains(429), "\(statuses)")
            #expect(try await gateway.request("GET", "/health").status != 429, "still answered while the address is limited")
        }
    }

    @Test("/health answers within 1 s while the broker link is stalled, and says it does not know")
    func healthBounded() async throws {
        let vhost = try TestVhost.create("gateway-health")
        let broker = try AMQPConfiguration(url: vhost.url)
        let proxy = try TCPProxy(targetPort: UInt16(broker.port))
        let proxied = "amqp://\(broker.user):\(broker.password)@127.0.0.1:\(proxy.port)/\(vhost.name)?heartbeat=30"
        let gateway = try GatewayProcess(vhost: vhost, openAPI: edgeContract, environment: ["AMQP_URL": proxied])
        do {
            try await gateway.waitUntilReady()
            let before = try await gateway.request("GET", "/health")
            #expect(before.json["broker"] as? String == "connected")

            proxy.blackhole()
            for attempt in 0..<3 {
                let started = ContinuousClock.now
                let stalled = try await gateway.request("GET", "/health")
                let took = ContinuousClock.now - started
                #expect(took < .milliseconds(1_200), "attempt \(attempt) took \(took)")
                #expect(stalled.status == 503)
                #expect(stalled.json["status"] as? String == "degraded")
                let services = stalled.json["services"] as? [String: [String: Any]] ?? [:]
                #expect(services["test"]?["status"] as? String == "down", "not claimed ok while unknown: \(stalled.text)")
                let detail: String = services["test"]?["detail"] as? String ?? ""
                #expect(detail.contains("did not answer"), "\(stalled.text)")
            }
            // Metrics do not depend on the broker at all.
            let started = ContinuousClock.now
            #expect(try await gateway.request("GET", "/metrics").status == 200)
            #expect(ContinuousClock.now - started < .milliseconds(500))
        } catch {
            Issue.record("failed: \(error)\ngateway log:\n\(gateway.process.log.suffix(3000))")
        }
        proxy.stop()
        gateway.session.invalidateAndCancel()
        gateway.process.kill()
        vhost.delete()
    }

    @Test("WARREN_ENV=Production without a real secret: the gateway refuses to start, saying why")
    func productionRefused() async throws {
        try await withVhost("gateway-env") { vhost in
            for (name, secret) in [("Production", ""), ("prod", TokenAuthority.developmentSecret.uppercased()), ("prodution", GatewayConfigurationTests.strongSecret)] {
                let gateway = try GatewayProcess(vhost: vhost, environment: ["WARREN_ENV": name, "JWT_SECRET": secret])
                let deadline = ContinuousClock.now + .seconds(20)
                while gateway.process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
                #expect(!gateway.process.isRunning, "\(name): still running")
                #expect(await gateway.process.stop() == 1, "\(name)")
                #expect(gateway.process.log.contains("cannot start"), "\(name): \(gateway.process.log)")
                #expect(!gateway.process.log.contains("\"ready\""))
                gateway.session.invalidateAndCancel()
            }
        }
    }
}
