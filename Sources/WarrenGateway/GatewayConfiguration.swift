import Foundation

/// Every knob of the gateway, read once from the environment with defaults that work on one
/// machine. Invalid values stop the start with a message naming the variable.
public struct GatewayConfiguration: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    public var amqpURL = "amqp://guest:guest@localhost:5672/"
    public var openAPIPath = "schemas/openapi.yaml"
    public var jwtSecret = TokenAuthority.developmentSecret
    public var usesDevelopmentSecret = true
    /// `WARREN_ENV`; production refuses a weak or development `JWT_SECRET`.
    public var environmentName = DeploymentEnvironment.development
    public var tokenLifetime = Duration.seconds(3600)
    /// Requests per second per client address; 0 turns rate limiting off.
    public var rateLimitPerSecond = 50.0
    public var rateLimitBurst = 100.0
    /// Origins allowed to call from a browser; empty: no CORS headers; `*`: any origin.
    public var corsOrigins: [String] = []
    public var maxBodyBytes = 1 << 20
    /// From a request's first byte until its head (request line and headers) is complete;
    /// past it: 408 and the connection is closed (`HTTP_HEADER_TIMEOUT_SECONDS`).
    public var headerTimeout = Duration.seconds(10)
    /// From the head until the last byte of the body (`HTTP_BODY_TIMEOUT_SECONDS`): 408 past it.
    public var bodyTimeout = Duration.seconds(30)
    /// How long a keep-alive connection may wait for its next request (`HTTP_IDLE_TIMEOUT_SECONDS`).
    public var idleTimeout = Duration.seconds(60)
    /// On SIGTERM, how long requests in flight and half-sent requests get before every
    /// connection is closed (`DRAIN_TIMEOUT_SECONDS`).
    public var drainTimeout = Duration.seconds(10)
    /// Event loop threads serving HTTP (`HTTP_THREADS`); the AMQP connection has its own thread.
    public var httpThreads = 1

    public init() {}

    public init(environment: [String: String]) throws(GatewayConfigurationError) {
        func number(_ name: String, _ range: ClosedRange<Double>) throws(GatewayConfigurationError) -> Double? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Double(text), range.contains(value) else {
                throw GatewayConfigurationError("\(name)='\(text)' must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        func integer(_ name: String, _ range: ClosedRange<Int>) throws(GatewayConfigurationError) -> Int? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Int(text), range.contains(value) else {
                throw GatewayConfigurationError("\(name)='\(text)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        host = environment["HTTP_HOST"] ?? host
        port = try integer("HTTP_PORT", 0...65_535) ?? port
        amqpURL = environment["AMQP_URL"] ?? amqpURL
        openAPIPath = environment["OPENAPI_PATH"] ?? openAPIPath
        tokenLifetime = try integer("JWT_TTL_SECONDS", 1...31_536_000).map { .seconds($0) } ?? tokenLifetime
        // 0 (off), or at least one request per 1,000 s: a rate nearer 0 makes waits no client can honour.
        rateLimitPerSecond = try number("RATE_LIMIT_PER_SECOND", 0...1_000_000) ?? rateLimitPerSecond
        if rateLimitPerSecond > 0, rateLimitPerSecond < 0.001 {
            throw GatewayConfigurationError("RATE_LIMIT_PER_SECOND='\(rateLimitPerSecond)' must be 0 (off) or from 0.001 to 1000000")
        }
        rateLimitBurst = try number("RATE_LIMIT_BURST", 0...1_000_000) ?? max(rateLimitBurst, rateLimitPerSecond)
        func seconds(_ name: String, _ range: ClosedRange<Double>) throws(GatewayConfigurationError) -> Duration? {
            try number(name, range).map { .milliseconds(Int64(($0 * 1000).rounded())) }
        }
        headerTimeout = try seconds("HTTP_HEADER_TIMEOUT_SECONDS", 0.05...3_600) ?? headerTimeout
        bodyTimeout = try seconds("HTTP_BODY_TIMEOUT_SECONDS", 0.05...3_600) ?? bodyTimeout
        idleTimeout = try seconds("HTTP_IDLE_TIMEOUT_SECONDS", 0.05...86_400) ?? idleTimeout
        drainTimeout = try seconds("DRAIN_TIMEOUT_SECONDS", 0...86_400) ?? drainTimeout
        httpThreads = try integer("HTTP_THREADS", 1...64) ?? httpThreads
        corsOrigins = (environment["CORS_ORIGINS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }

        environmentName = try DeploymentEnvironment(environment["WARREN_ENV"])
        if let secret = environment["JWT_SECRET"], !secret.isEmpty {
            jwtSecret = secret
            usesDevelopmentSecret = TokenAuthority.isDevelopmentSecret(secret)
        }
        if environmentName == .production {
            try Self.checkProductionSecret(jwtSecret, usesDevelopmentSecret: usesDevelopmentSecret)
        }
    }

    /// At least 32 bytes, at least 8 distinct bytes, no piece (nearly) repeated through it
    /// (`nearPeriod`, `repeatedPieces`), and not the development secret in any
    /// spelling: a token signed with a guessable secret is a token anyone can forge.
    static func checkProductionSecret(_ secret: String, usesDevelopmentSecret: Bool) throws(GatewayConfigurationError) {
        let advice = "set JWT_SECRET to a random secret of at least 32 bytes (e.g. `openssl rand -base64 48`)"
        guard !usesDevelopmentSecret else {
            throw GatewayConfigurationError("WARREN_ENV=production refuses the development JWT_SECRET (in any spelling): \(advice)")
        }
        guard secret.utf8.count >= 32 else {
            throw GatewayConfigurationError("JWT_SECRET is \(secret.utf8.count) bytes; production needs at least 32: \(advice)")
        }
        let distinct = Set(secret.utf8).count
        guard distinct >= minimumDistinctBytes else {
            throw GatewayConfigurationError(
                "JWT_SECRET has only \(distinct) distinct bytes; production needs at least \(minimumDistinctBytes), as a random secret has: \(advice)")
        }
        // `abcdefgh` four times has enough distinct bytes and length, and the strength of 8 bytes;
        // so has it with a byte added anywhere (`abcdefgh…X`, `password…1`).
        let bytes = Array(secret.utf8)
        if let period = nearPeriod(bytes) {
            throw GatewayConfigurationError(
                "JWT_SECRET (nearly) repeats a piece of \(period) bytes; production needs a random secret: \(advice)")
        }
        // The same with a byte put in the middle (`passwordpassword!passwordpassword`), which
        // shifts the period half way.
        let (repeated, pieces) = repeatedPieces(bytes)
        if repeated * 2 >= pieces {
            throw GatewayConfigurationError(
                "JWT_SECRET is mostly pieces of itself: \(repeated) of its \(pieces) runs of 4 bytes appear earlier in it; production needs a random secret: \(advice)")
        }
    }

    /// How many of the secret's runs of 4 bytes (one starting at each byte) appear earlier in
    /// it, and how many runs there are. A random secret of 64 hex characters repeats about none
    /// (61 runs among 65,536 possible); a repeated word, however cut or shifted, most of them.
    static func repeatedPieces(_ bytes: [UInt8]) -> (repeated: Int, pieces: Int) {
        guard bytes.count >= 4 else { return (0, 0) }
        var seen = Set<UInt32>()
        var repeated = 0
        for start in 0...(bytes.count - 4) {
            let piece = bytes[start..<(start + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            if !seen.insert(piece).inserted { repeated += 1 }
        }
        return (repeated, bytes.count - 3)
    }

    /// The shortest period `p` (1 to half the length) at which at least 3 in 4 bytes equal the
    /// byte `p` before them, or nil: a repeated piece with a few bytes added, changed or cut
    /// anywhere. A random secret matches about 1 in 16 (hex) or 1 in 64 (base64) at any period.
    static func nearPeriod(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        return (1...(bytes.count / 2)).first { period in
            let compared = bytes.count - period
            var equal = 0
            for index in 0..<compared where bytes[index] == bytes[index + period] { equal += 1 }
            return equal * 4 >= compared * 3
        }
    }

    /// A random secret of 32 bytes or more, even in hex, has about 14 distinct bytes; a
    /// repeated word or `aaaa…` has fewer than 8.
    static let minimumDistinctBytes = 8
}

/// `WARREN_ENV`, read case-insensitively: `production` (or `prod`), `development` (or `dev`,
/// the default when unset), `test`. Any other name stops the start: a misspelt `prodution`
/// must not fall back to development rules.
public enum DeploymentEnvironment: String, Sendable, CaseIterable {
    case production, development, test

    public init(_ text: String?) throws(GatewayConfigurationError) {
        let name = (text ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        switch name {
        case "": self = .development
        case "production", "prod": self = .production
        case "development", "dev": self = .development
        case "test": self = .test
        default:
            throw GatewayConfigurationError(
                "WARREN_ENV='\(text ?? "")' is not an environment Warren knows: use production (or prod), development (or dev) or test")
        }
    }
}

public struct GatewayConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
