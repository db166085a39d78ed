import Foundation
public import Testing

/// A PostgreSQL database of a test's own (unique name), created on the server that
/// `scripts/postgres.sh` starts and dropped after, so that suites run in parallel and leave
/// nothing behind. Created and dropped with `psql` as the tests' role (`WARREN_TEST_PG_USER`,
/// `WARREN_TEST_PG_PASSWORD`: warren/warren; `WARREN_TEST_PG_HOST`, `WARREN_TEST_PG_PORT`:
/// 127.0.0.1:5432).
public struct TestPostgresDatabase: Sendable {
    public let name: String
    /// `postgres://user:password@host:port/<name>?sslmode=disable`: the service's `DATABASE_URL`.
    public let url: String

    static var settings: (host: String, port: String, user: String, password: String) {
        let environment = ProcessInfo.processInfo.environment
        return (
            environment["WARREN_TEST_PG_HOST"] ?? "127.0.0.1", environment["WARREN_TEST_PG_PORT"] ?? "5432",
            environment["WARREN_TEST_PG_USER"] ?? "warren", environment["WARREN_TEST_PG_PASSWORD"] ?? "warren"
        )
    }

    /// Creates `<prefix>_<random>` (lower case letters, digits and `_` only: safe as an identifier).
    public static func create(_ prefix: String = "test") throws -> TestPostgresDatabase {
        let name = "warren_\(prefix)_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        try psql("CREATE DATABASE \(name) ENCODING 'UTF8' TEMPLATE template0")
        let settings = settings
        return TestPostgresDatabase(
            name: name, url: "postgres://\(settings.user):\(settings.password)@\(settings.host):\(settings.port)/\(name)?sslmode=disable")
    }

    /// Drops the database, closing any connection still open to it.
    public func drop() {
        do {
            try Self.psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        } catch {
            Issue.record("could not drop test database \(name): \(error)")
        }
    }

    /// Runs one SQL command against this database and returns its output (unaligned, tuples only).
    @discardableResult
    public func sql(_ command: String) throws -> String { try Self.psql(command, database: name) }

    @discardableResult
    static func psql(_ command: String, database: String = "postgres") throws -> String {
        let settings = settings
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["psql", "-h", settings.host, "-p", settings.port, "-U", settings.user, "-d", database, "-v", "ON_ERROR_STOP=1", "-tAqc", command]
        var environment = ProcessInfo.processInfo.environment
        environment["PGPASSWORD"] = settings.password
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw PostgresCommandFailed(description: "psql \(command): \(text) (is PostgreSQL running? scripts/postgres.sh starts it)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

public struct PostgresCommandFailed: Error, CustomStringConvertible {
    public let description: String
}

/// The storage backends the storage and service suites run against.
public enum StorageBackend: String, Sendable, CaseIterable, CustomTestStringConvertible {
    case sqlite, postgres
    public var testDescription: String { self == .sqlite ? "SQLite" : "PostgreSQL" }
}
