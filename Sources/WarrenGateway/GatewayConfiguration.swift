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
    public var tokenLifetime = Duration.seconds(3600)
    /// Requests per second per client address; 0 turns rate limiting off.
    public var rateLimitPerSecond = 50.0
    public var rateLimitBurst = 100.0
    /// Origins allowed to call from a browser; empty: no CORS headers; `*`: any origin.
    public var corsOrigins: [String] = []
    public var maxBodyBytes = 1 << 20

    public init() {}

    public init(environment: [String: String]) throws(GatewayConfigurationError) {
        func number(_ name: String, _ range: ClosedRange<Double>) throws(GatewayConfigurationError) -> Double? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Double(text), range.contains(value) else {
                throw GatewayConfigurationError("\(name)='\(text)' must be a number from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }
        host = environment["HTTP_HOST"] ?? host
        port = try number("HTTP_PORT", 0...65_535).map { Int($0) } ?? port
        amqpURL = environment["AMQP_URL"] ?? amqpURL
        openAPIPath = environment["OPENAPI_PATH"] ?? openAPIPath
        tokenLifetime = try number("JWT_TTL_SECONDS", 1...31_536_000).map { .seconds(Int($0)) } ?? tokenLifetime
        rateLimitPerSecond = try number("RATE_LIMIT_PER_SECOND", 0...1_000_000) ?? rateLimitPerSecond
        rateLimitBurst = try number("RATE_LIMIT_BURST", 0...1_000_000) ?? max(rateLimitBurst, rateLimitPerSecond)
        corsOrigins = (environment["CORS_ORIGINS"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }

        let production = environment["WARREN_ENV"] == "production"
        if let secret = environment["JWT_SECRET"], !secret.isEmpty {
            jwtSecret = secret
            usesDevelopmentSecret = secret == TokenAuthority.developmentSecret
        }
        if production {
            guard !usesDevelopmentSecret else {
                throw GatewayConfigurationError(
                    "WARREN_ENV=production needs JWT_SECRET: set it to a random secret of at least 32 bytes "
                        + "(e.g. `openssl rand -base64 48`); the development secret is refused in production")
            }
            guard jwtSecret.utf8.count >= 32 else {
                throw GatewayConfigurationError("JWT_SECRET is \(jwtSecret.utf8.count) bytes; production needs at least 32 (e.g. `openssl rand -base64 48`)")
            }
        }
    }
}

public struct GatewayConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
