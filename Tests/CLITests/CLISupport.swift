// Helpers for running the built `warren` binary against the real broker, each test in a vhost
// of its own.
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

extension TestVhost {
    func connect() async throws -> AMQPConnection {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "cli-test-\(name)"
        return try await AMQPConnection.connect(configuration)
    }

    /// Runs `body` with a vhost of its own and a connection to it; the vhost (and everything
    /// in it) is deleted afterwards, whatever happened.
    static func with<T>(_ body: (TestVhost, AMQPConnection) async throws -> T) async throws -> T {
        try await withVhost("cli") { vhost in
            let connection = try await vhost.connect()
            do {
                let result = try await body(vhost, connection)
                await connection.close()
                return result
            } catch {
                await connection.close()
                throw error
            }
        }
    }
}

/// The finished `warren` process: exit status and what it wrote.
struct CLIResult: CustomStringConvertible {
    let status: Int32
    let stdout: String
    let stderr: String
    /// Ended by a signal (a trap is SIGILL or SIGTRAP) rather than by exiting.
    var signalled = false

    var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8), options: .fragmentsAllowed) }
    var description: String { "\(signalled ? "signal" : "exit") \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

/// The built `warren` binary, run as an operator would. Output goes to files (a pipe the test
/// does not drain could block the child, and an inherited one would hold `swift test`).
final class WarrenCLI: Sendable {
    /// `.build/debug/warren`, or `WARREN_CLI_BINARY` (e.g. a release build, to measure throughput).
    static let binary = ProcessInfo.processInfo.environment["WARREN_CLI_BINARY"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug/warren").standardized

    let process = Process()
    private let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-cli-\(UUID().uuidString)")

    init(_ arguments: [String], url: String?, stdin: String? = nil, environment extra: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        process.executableURL = Self.binary
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["AMQP_URL"] = url
        if url == nil { environment.removeValue(forKey: "AMQP_URL") }
        for (key, value) in extra { environment[key] = value }
        process.environment = environment
        _ = FileManager.default.createFile(atPath: path("stdin"), contents: Data((stdin ?? "").utf8))
        _ = FileManager.default.createFile(atPath: path("stdout"), contents: nil)
        _ = FileManager.default.createFile(atPath: path("stderr"), contents: nil)
        process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: path("stdin")))
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: path("stdout")))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: path("stderr")))
        try process.run()
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    var stdout: String { (try? String(contentsOfFile: path("stdout"), encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: path("stderr"), encoding: .utf8)) ?? "" }

    /// Waits for the exit (killing the process after `timeout`) and cleans up.
    func finish(within timeout: Duration = .seconds(60)) async throws -> CLIResult {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            Issue.record("warren \(process.arguments ?? []) did not finish within \(timeout)")
            process.terminate()
        }
        process.waitUntilExit()
        let result = CLIResult(
            status: process.terminationStatus, stdout: stdout, stderr: stderr, signalled: process.terminationReason == .uncaughtSignal)
        try? FileManager.default.removeItem(at: directory)
        return result
    }

    /// Waits until stderr (or stdout) contains `text`.
    func waitFor(_ text: String, inStdout: Bool = false, within timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (inStdout ? stdout : stderr).contains(text) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("warren never wrote '\(text)'; stdout: \(stdout) stderr: \(stderr)")
    }

    /// Runs `warren arguments…` to the end.
    static func run(_ arguments: [String], url: String?, stdin: String? = nil, environment: [String: String] = [:]) async throws -> CLIResult {
        try await WarrenCLI(arguments, url: url, stdin: stdin, environment: environment).finish()
    }
}

/// Runs a Warren service (`RPCResponder`) inside the test, in the test's vhost.
final class InProcessService: Sendable {
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    init(_ service: String, handlers: RPCHandlers, connection: AMQPConnection) async throws {
        let responder = RPCResponder(service: service, connection: connection, handlers: handlers)
        let group = ServiceGroup(services: [responder], gracefulShutdownSignals: [], logger: Logger(label: "test"))
        self.group = group
        task = Task { try await group.run() }
        let channel = try await connection.openChannel()
        for _ in 0..<500 {
            if let info = try? await channel.inspectQueue("\(service).rpc"), info.consumerCount > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        await channel.close()
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}

/// Takes `count` messages off a queue (no ack), in queue order.
func drain(_ queue: String, on connection: AMQPConnection, expecting count: Int, within timeout: Duration = .seconds(60)) async throws -> [AMQPDelivery] {
    let channel = try await connection.openChannel()
    let received = try await channel.consume(queue: queue, noAck: true).first(count, within: timeout)
    await channel.close()
    return received
}

/// How many messages wait in a queue right now.
func depth(_ queue: String, on connection: AMQPConnection) async throws -> Int {
    let channel = try await connection.openChannel()
    let info = try await channel.inspectQueue(queue)
    await channel.close()
    return Int(info.messageCount)
}

extension WarrenCLI {
    /// Runs `warren` with arguments given as raw bytes, which may be invalid UTF-8 (`Process`
    /// takes Strings and cannot pass them), stdin from /dev/null; killed after `timeout`.
    static func run(bytes arguments: [[UInt8]], url: String, within timeout: Duration = .seconds(60)) async throws -> CLIResult {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-cli-raw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stdoutPath = directory.appendingPathComponent("stdout").path
        let stderrPath = directory.appendingPathComponent("stderr").path

        var environment = ProcessInfo.processInfo.environment
        environment["AMQP_URL"] = url
        let argv: [UnsafeMutablePointer<CChar>?] = ([Array(binary.path.utf8)] + arguments).map { bytes in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            for (index, byte) in bytes.enumerated() { pointer[index] = CChar(bitPattern: byte) }
            pointer[bytes.count] = 0
            return pointer
        } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { $0?.deallocate() }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, binary.path, &actions, nil, argv, envp)
        try #require(spawned == 0, "posix_spawn failed: \(spawned)")

        var status: Int32 = 0
        let deadline = ContinuousClock.now + timeout
        while waitpid(pid, &status, WNOHANG) == 0 {
            if ContinuousClock.now > deadline {
                Issue.record("warren did not finish within \(timeout)")
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        let signal = status & 0x7F
        return CLIResult(status: signal == 0 ? (status >> 8) & 0xFF : signal, stdout: read(stdoutPath), stderr: read(stderrPath), signalled: signal != 0)
    }
}
