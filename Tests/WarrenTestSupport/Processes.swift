// Real processes and broker vhosts for end-to-end tests: each test gets its own vhost, so the
// services' fixed queue names (`users.rpc`, `warren.events`, …) never meet another test's.
public import Foundation
import Glibc
import Testing

/// A RabbitMQ virtual host of one test's own; `delete()` removes it with every queue and
/// exchange in it, which leaves the broker as it was.
public struct TestVhost: Sendable {
    public let name: String

    /// The AMQP URL of this vhost (same broker and credentials as `Broker.url`).
    public var url: String {
        let base = Broker.url
        guard let scheme = base.range(of: "://") else { return base }
        let authorityEnd = base[scheme.upperBound...].firstIndex(of: "/") ?? base.endIndex
        return "\(base[..<authorityEnd])/\(name)"
    }

    public static func create(_ prefix: String = "test") throws -> TestVhost {
        let vhost = TestVhost(name: "\(prefix)-\(UUID().uuidString.prefix(12).lowercased())")
        _ = try BrokerControl.run(["add_vhost", vhost.name])
        _ = try BrokerControl.run(["set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*"])
        return vhost
    }

    public func delete() {
        _ = try? BrokerControl.run(["delete_vhost", name])
    }
}

/// Runs `body` with a fresh vhost that is deleted afterwards, whatever happens.
public func withVhost<T>(_ prefix: String = "test", _ body: (TestVhost) async throws -> T) async throws -> T {
    let vhost = try TestVhost.create(prefix)
    do {
        let result = try await body(vhost)
        vhost.delete()
        return result
    } catch {
        vhost.delete()
        throw error
    }
}

/// One of the project's executables (`.build/debug/<name>`) running as a real process, with a
/// random HTTP port and JSON logs in a temporary file (never a pipe: a pipe still held by the
/// child would keep `swift test` waiting).
public final class ServiceProcess: Sendable {
    public let executable: String
    public let port: Int
    public let environment: [String: String]
    public let logFile: URL
    private let process: Process

    public static var buildDirectory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug").standardized
    }

    /// Starts `executable` with the test's environment plus `environment` (which wins), in
    /// `workingDirectory` when given (as another host would run it).
    public init(_ executable: String, environment: [String: String] = [:], port: Int? = nil, workingDirectory: URL? = nil) throws {
        self.executable = executable
        self.port = port ?? freePort()
        var merged = ProcessInfo.processInfo.environment
        merged["HTTP_PORT"] = "\(self.port)"
        merged["LOG_FORMAT"] = "json"
        for (key, value) in environment { merged[key] = value }
        self.environment = merged
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(URL(fileURLWithPath: executable).lastPathComponent)-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        process = Process()
        process.executableURL = Self.buildDirectory.appendingPathComponent(executable)
        process.environment = merged
        if let workingDirectory { process.currentDirectoryURL = workingDirectory }
        process.standardOutput = try FileHandle(forWritingTo: logFile)
        process.standardError = process.standardOutput
        try process.run()
    }

    public var isRunning: Bool { process.isRunning }
    public var pid: Int32 { process.processIdentifier }

    public var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// The log as JSON objects, one per line.
    public var logLines: [[String: Any]] {
        log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Waits until the process serves its RPC queue (logged `serving`) and, if it subscribes to
    /// events, consumes its events queue (`subscribed`); fails the test if it exits first or
    /// takes longer than `timeout`.
    public func waitUntilReady(within timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let log = self.log
            if log.contains(#""msg":"serving""#), !log.contains("Warren.EventSubscriber") || log.contains(#""msg":"subscribed""#) {
                return
            }
            guard process.isRunning else {
                Issue.record("\(executable) exited with \(process.terminationStatus):\n\(log)")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("\(executable) did not log ready within \(timeout):\n\(log)")
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`); returns the exit status.
    @discardableResult
    public func stop(timeout: Duration = .seconds(15)) async -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL: a crash, as far as the service can tell.
    public func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: logFile)
    }
}

/// A temporary folder for a test's databases, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("warren-test-\(UUID().uuidString.prefix(12))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public var path: String { url.path }
    public func remove() { try? FileManager.default.removeItem(at: url) }
}

/// A TCP port nothing listens on now: the kernel's pick for a socket bound to port 0.
public func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = INADDR_ANY
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
            bind(fd, socketAddress, length) == 0 && getsockname(fd, socketAddress, &length) == 0
        }
    }
    return bound ? Int(UInt16(bigEndian: address.sin_port)) : Int.random(in: 30_000..<45_000)
}
