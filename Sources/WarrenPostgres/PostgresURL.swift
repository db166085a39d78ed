import Foundation
import NIOSSL
public import PostgresNIO

/// `DATABASE_URL` read as libpq reads a URL: `postgres://user:password@host:port/database`
/// (`postgresql://` too; user and password percent-decoded; port 5432 by default), with
/// `?sslmode=disable|prefer|require|verify-full` (`prefer`, libpq's default, when absent).
/// `prefer` and `require` encrypt without checking the server's certificate, as libpq does;
/// `verify-full` checks it and the host name.
public struct PostgresURL: Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int
    public let username: String
    public let password: String?
    public let database: String
    public let sslMode: String

    /// A URL that cannot be used, with what is wrong. Never holds the password.
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    public init(_ text: String) throws(Invalid) {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased() else {
            throw Invalid(description: "DATABASE_URL is not a URL (expected postgres://user:password@host:5432/database)")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw Invalid(description: "DATABASE_URL has scheme '\(scheme)'; expected postgres:// or postgresql://")
        }
        guard let host = components.host, !host.isEmpty else { throw Invalid(description: "DATABASE_URL names no host") }
        guard let user = components.user, !user.isEmpty else { throw Invalid(description: "DATABASE_URL names no user (postgres://user:password@host/database)") }
        let database = String(components.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else {
            throw Invalid(description: "DATABASE_URL must name one database as its path (postgres://user:password@\(host)/database)")
        }
        if let port = components.port, !(1...65_535).contains(port) {
            throw Invalid(description: "DATABASE_URL's port \(port) is not from 1 to 65535")
        }
        var sslMode = "prefer"
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let value = item.value, ["disable", "prefer", "require", "verify-full"].contains(value) else {
                    throw Invalid(description: "DATABASE_URL's sslmode must be disable, prefer, require or verify-full")
                }
                sslMode = value
            default:
                throw Invalid(description: "DATABASE_URL has an unknown parameter '\(item.name)' (only sslmode is read)")
            }
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? user
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        self.database = components.percentEncodedPath.dropFirst().removingPercentEncoding ?? database
        self.sslMode = sslMode
    }

    /// The URL without its password, for logs and errors.
    public var description: String {
        "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)?sslmode=\(sslMode)"
    }

    /// The client's configuration; `maximumConnections` bounds the pool.
    public func clientConfiguration(maximumConnections: Int = 20) -> PostgresClient.Configuration {
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: clientTLS)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }

    /// One connection's configuration (the start-up check and migrations): it fails at once
    /// with the server's reason, where the pool would retry.
    public func connectionConfiguration() throws -> PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS
        switch tlsMode {
        case .disable: tls = .disable
        case .prefer(let configuration): tls = .prefer(try NIOSSLContext(configuration: configuration))
        case .require(let configuration): tls = .require(try NIOSSLContext(configuration: configuration))
        }
        var connection = PostgresConnection.Configuration(host: host, port: port, username: username, password: password, database: database, tls: tls)
        connection.options.connectTimeout = .seconds(5)
        return connection
    }

    private enum TLSMode {
        case disable
        case prefer(TLSConfiguration)
        case require(TLSConfiguration)
    }

    private var clientTLS: PostgresClient.Configuration.TLS {
        switch tlsMode {
        case .disable: return .disable
        case .prefer(let configuration): return .prefer(configuration)
        case .require(let configuration): return .require(configuration)
        }
    }

    private var tlsMode: TLSMode {
        switch sslMode {
        case "disable": return .disable
        case "verify-full": return .require(TLSConfiguration.makeClientConfiguration())
        default:
            // libpq's prefer and require encrypt but do not check the certificate.
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = .none
            return sslMode == "require" ? .require(configuration) : .prefer(configuration)
        }
    }
}
