import Foundation
import Glibc
import Testing
import Warren
import WarrenGateway
import WarrenTestSupport

/// A built binary and where its settings are read, so that its `--help` can be held to the code.
struct Binary: Sendable, CustomTestStringConvertible {
    var name: String
    /// Source folders or files whose environment variables `--help` must list.
    var sources: [String]
    /// The exit status of a usage error (argument-parser's EX_USAGE for warren-bench).
    var usageStatus: Int32 = ServiceCommandLine.usageStatus
    /// A service: `--help` names its `/health` and `/metrics`.
    var isService = true

    var testDescription: String { name }

    static let hostSources = ["Sources/Warren/ServiceHost.swift"]
    static let services = [
        Binary(name: "user-service", sources: ["Sources/UserService", "Sources/WarrenSQLite/ServiceDatabase.swift"] + hostSources),
        Binary(name: "order-service", sources: ["Sources/OrderService", "Sources/WarrenSQLite/ServiceDatabase.swift"] + hostSources),
        Binary(name: "payment-service", sources: ["Sources/PaymentService", "Sources/WarrenSQLite/ServiceDatabase.swift"] + hostSources),
        Binary(name: "event-store", sources: ["Sources/EventStore"] + hostSources),
        Binary(name: "warren-echo", sources: ["Sources/EchoService"] + hostSources),
        Binary(name: "api-gateway", sources: ["Sources/APIGateway", "Sources/WarrenGateway"]),
    ]
    static let tools = [
        Binary(name: "warren", sources: ["Sources/WarrenCLI"], isService: false),
        Binary(
            // Not GatewayBench.swift: the variables there are set for the processes it starts.
            name: "warren-bench", sources: ["Sources/WarrenBench/AMQPBench.swift", "Sources/WarrenBench/WarrenBench.swift"], usageStatus: 64, isService: false),
    ]
    static let all = services + tools
}

/// What a run of a binary left: its exit status, output, and whether it touched the broker.
struct Run {
    var status: Int32
    var stdout: String
    var stderr: String
    var seconds: Double
    /// Connections the fake broker (a listening socket on `AMQP_URL`'s port) accepted.
    var brokerConnections: Int
    /// Files the binary created in its `DATA_DIR`.
    var dataFiles: [String]

    /// Runs `.build/debug/<binary> arguments` with `AMQP_URL` at a socket that listens but never
    /// answers (a binary that tried the broker would hang there, and the attempt is counted) and
    /// `DATA_DIR` in an empty folder.
    static func of(_ binary: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Run {
        let listener = try Listener()
        defer { listener.close() }
        let data = try TemporaryDirectory()
        defer { data.remove() }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ops-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("stdout"), err = folder.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)

        let process = Process()
        process.executableURL = ServiceProcess.buildDirectory.appendingPathComponent(binary)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        merged["AMQP_URL"] = "amqp://guest:guest@127.0.0.1:\(listener.port)/"
        merged["WARREN_MANAGEMENT_URL"] = "http://127.0.0.1:\(listener.port)"
        merged["DATA_DIR"] = data.path
        merged["DATABASE_PATH"] = nil
        merged["HTTP_PORT"] = "\(freePort())"
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        let start = ContinuousClock.now
        try process.run()
        // Whatever it does, it must be done in 20 s: a binary waiting on the silent broker is not.
        let deadline = start + .seconds(20)
        // Polled with Task.sleep: the tests run in parallel with others on few threads.
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let elapsed = ContinuousClock.now - start
        return Run(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "",
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            brokerConnections: listener.acceptedSoFar(),
            dataFiles: (try? FileManager.default.contentsOfDirectory(atPath: data.path)) ?? [])
    }
}

/// A TCP socket on 127.0.0.1 that listens and never answers: the broker a binary must not call.
final class Listener {
    let fd: Int32
    let port: Int

    init() throws {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(socketFD, socketAddress, length) == 0 && getsockname(socketFD, socketAddress, &length) == 0
            }
        }
        guard socketFD >= 0, bound, listen(socketFD, 16) == 0 else {
            Glibc.close(socketFD)
            throw POSIXError(.EADDRNOTAVAIL)
        }
        _ = fcntl(socketFD, F_SETFL, fcntl(socketFD, F_GETFL) | O_NONBLOCK)
        fd = socketFD
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Connections waiting in the backlog (each accepted and closed).
    func acceptedSoFar() -> Int {
        var count = 0
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return count }
            Glibc.close(client)
            count += 1
        }
    }

    func close() { Glibc.close(fd) }
}

@Suite("Every binary's command line answers without connecting")
struct CommandLineTests {
    @Test("--help prints what the binary serves and reads, exits 0, connects to nothing", arguments: Binary.all)
    func help(_ binary: Binary) async throws {
        let run = try await Run.of(binary.name, ["--help"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.seconds < 10)
        #expect(run.brokerConnections == 0)
        #expect(run.dataFiles.isEmpty, "created \(run.dataFiles)")
        #expect(run.stdout.lowercased().contains("usage"))
        if binary.isService {
            #expect(run.stdout.contains("GET /health"))
            #expect(run.stdout.contains("GET /metrics"))
            #expect(run.stdout.contains("Environment (default):"))
            #expect(run.stdout.hasPrefix("\(binary.name) \(WarrenVersion.string): "))
        }
        #expect(run.stdout.contains("AMQP_URL"))
    }

    @Test("--version prints Warren's version and exits 0 without connecting", arguments: Binary.all)
    func version(_ binary: Binary) async throws {
        let run = try await Run.of(binary.name, ["--version"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.brokerConnections == 0)
        #expect(run.dataFiles.isEmpty)
        let expected = binary.isService ? "\(binary.name) \(WarrenVersion.string)\n" : "\(WarrenVersion.string)\n"
        #expect(run.stdout == expected)
    }

    @Test("An unknown argument is a usage error naming it, with the usage, and nothing starts", arguments: Binary.all)
    func unknownArgument(_ binary: Binary) async throws {
        let run = try await Run.of(binary.name, ["--bogus"])
        #expect(run.status == binary.usageStatus, "\(run.stdout)\(run.stderr)")
        #expect(run.seconds < 10)
        #expect(run.brokerConnections == 0)
        #expect(run.dataFiles.isEmpty)
        let first = run.stderr.split(separator: "\n").first ?? ""
        #expect(first.contains("--bogus"), "first line: \(first)")
        #expect(run.stderr.lowercased().contains("usage"))
        #expect(run.stdout.isEmpty)
    }

    @Test("A stray argument after a service's options is refused too", arguments: Binary.services)
    func strayArgument(_ binary: Binary) async throws {
        let run = try await Run.of(binary.name, ["--version", "serve"])
        #expect(run.status == ServiceCommandLine.usageStatus)
        #expect(run.stderr.contains(#""serve""#))
        let plain = try await Run.of(binary.name, ["serve"])
        #expect(plain.status == ServiceCommandLine.usageStatus)
        #expect(plain.brokerConnections == 0)
    }

    @Test("user-service still runs its admin subcommands (against its database, never the broker)")
    func adminSubcommands() async throws {
        let missing = try await Run.of("user-service", ["grant-admin", "ada@example.com"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("no user database"))
        #expect(missing.brokerConnections == 0)
        let incomplete = try await Run.of("user-service", ["revoke-admin"])
        #expect(incomplete.status == 2)
        #expect(incomplete.stderr.contains("takes exactly one email address"))
        let help = try await Run.of("user-service", ["--help"])
        #expect(help.stdout.contains("grant-admin <email>"))
        #expect(help.stdout.contains("revoke-admin <email>"))
        // The subcommand gets every argument: `grant-admin --help` is a question, not an email address.
        for arguments in [["grant-admin", "--help"], ["revoke-admin", "-h"], ["grant-admin", "ada@example.com", "--help"]] {
            let asked = try await Run.of("user-service", arguments)
            #expect(asked.status == 0, "\(arguments): \(asked.stderr)")
            #expect(asked.stdout.contains("user-service grant-admin <email>"), "\(arguments) prints the usage")
            #expect(asked.stderr.isEmpty, "\(arguments)")
        }
    }

    @Test("a bad LOG_LEVEL or LOG_FORMAT stops the start with a line naming it, before any connection",
          arguments: [("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "yaml")])
    func badLogSettings(name: String, value: String) async throws {
        for binary in ["warren-echo", "api-gateway"] {
            let run = try await Run.of(binary, [], environment: [name: value])
            #expect(run.status == 1, "\(binary) \(name)=\(value): \(run.stdout) \(run.stderr)")
            #expect(run.stderr.contains("\(name)='\(value)'"), "\(binary): \(run.stderr)")
            #expect(run.brokerConnections == 0)
        }
    }

    @Test("LOG_LEVEL and LOG_FORMAT are read in any letter case")
    func logSettingsCase() throws {
        let settings = try ServiceHost.logSettings(["LOG_LEVEL": "DEBUG", "LOG_FORMAT": " JSON "])
        #expect("\(settings.level)" == "debug")
        #expect(settings.json == true)
        #expect("\(try ServiceHost.logSettings([:]).level)" == "info")
        #expect(try ServiceHost.logSettings(["LOG_FORMAT": "text"]).json == false)
    }

    /// Variables --help may list though no `environment["…"]` in Sources reads them by that
    /// name: swift-otel reads the OTEL_* variables itself.
    static let readElsewhere: Set<String> = ["DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"]

    @Test("--help lists every environment variable the binary's code reads, and only those", arguments: Binary.all)
    func helpMatchesTheCode(_ binary: Binary) async throws {
        let run = try await Run.of(binary.name, ["--help"])
        let root = ServiceProcess.buildDirectory.appendingPathComponent("../..").standardized
        let read = try binary.sources.reduce(into: Set<String>()) { names, source in
            names.formUnion(try Self.variables(in: root.appendingPathComponent(source)))
        }
        #expect(!read.isEmpty)
        for name in read.sorted() {
            #expect(run.stdout.contains(name), "\(binary.name) reads \(name) but --help does not say so")
        }
        guard binary.isService else { return }
        // Every name in the table exists somewhere in the code (or on a branch about to merge).
        let everywhere = try Self.variables(in: root.appendingPathComponent("Sources")).union(Self.readElsewhere)
        let environment = run.stdout.components(separatedBy: "Environment (default):\n").last ?? ""
        let listed = environment.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  "), let word = line.split(separator: " ").first, word.allSatisfy({ $0.isUppercase || $0 == "_" || $0.isNumber }) else { return nil }
            return String(word)
        }
        #expect(listed.count >= 5, "\(run.stdout)")
        for name in listed {
            #expect(everywhere.contains(name), "\(binary.name) --help lists \(name), which nothing reads")
        }
    }

    @Test("api-gateway --help states GatewayConfiguration's defaults")
    func gatewayDefaults() async throws {
        let help = try await Run.of("api-gateway", ["--help"]).stdout
        let defaults = GatewayConfiguration()
        func stated(_ name: String) -> String? {
            help.split(separator: "\n").first { $0.hasPrefix("  \(name) ") }
                .flatMap { $0.split(separator: "(", maxSplits: 1).last?.split(separator: ")").first.map(String.init) }
        }
        #expect(stated("HTTP_PORT") == "\(defaults.port)")
        #expect(stated("HTTP_HOST") == defaults.host)
        #expect(stated("OPENAPI_PATH") == defaults.openAPIPath)
        #expect(stated("JWT_TTL_SECONDS") == "\(defaults.tokenLifetime.components.seconds)")
        #expect(stated("RATE_LIMIT_PER_SECOND").flatMap(Double.init) == defaults.rateLimitPerSecond)
        #expect(stated("RATE_LIMIT_BURST").flatMap(Double.init) == defaults.rateLimitBurst)
        // Unset, the burst is never below the rate: --help says so.
        let fast = try GatewayConfiguration(environment: ["RATE_LIMIT_PER_SECOND": "500"])
        #expect(fast.rateLimitBurst == 500)
        #expect(help.contains("at least RATE_LIMIT_PER_SECOND when unset"))
        #expect(stated("WARREN_ENV") == defaults.environmentName.rawValue)
        #expect(stated("AMQP_URL") == defaults.amqpURL)
    }

    /// Environment-variable-shaped string literals (`"HTTP_PORT"`) in a file or folder of Swift,
    /// the command-line tables aside.
    static func variables(in url: URL) throws -> Set<String> {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder) else {
            Issue.record("no \(url.path)")
            return []
        }
        let files: [URL] =
            isFolder.boolValue
            ? (FileManager.default.enumerator(at: url, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? [])
            : [url]
        let pattern = try Regex(#""([A-Z][A-Z0-9]*_[A-Z0-9_]+)""#)
        var names = Set<String>()
        // Not the help tables themselves: the point is what the code reads.
        for file in files where !file.lastPathComponent.hasSuffix("CommandLine.swift") {
            let text = try String(contentsOf: file, encoding: .utf8)
            for match in text.matches(of: pattern) {
                if let name = match.output[1].substring { names.insert(String(name)) }
            }
        }
        return names
    }
}

@Suite("ServiceCommandLine decides without side effects")
struct ServiceCommandLineTests {
    let commandLine = ServiceCommandLine(
        binary: "demo", summary: "a demo.", serves: ["queue demo.rpc"], variables: [.init("AMQP_URL", "amqp://…", "the broker")],
        subcommands: [.init("grant-admin <email>", "make an admin")])

    @Test("No arguments serve; a declared subcommand gets every argument")
    func invocations() {
        #expect(commandLine.outcome([]) == .invocation(.serve))
        #expect(commandLine.outcome(["grant-admin", "a@b.c", "--help"]) == .invocation(.subcommand(["grant-admin", "a@b.c", "--help"])))
    }

    @Test("Usage errors name the argument, quoted so that control characters cannot reach the terminal",
          arguments: ["--bogus", "-x", "grant", "", "bad\u{1B}[2Jname", "--version=1"])
    func usageErrors(_ argument: String) throws {
        guard case .usageError(let text) = commandLine.outcome([argument]) else {
            Issue.record("\(argument) was accepted")
            return
        }
        let first = try #require(text.split(separator: "\n", omittingEmptySubsequences: false).first)
        #expect(first.hasPrefix("demo: unknown argument \""))
        #expect(!first.contains("\u{1B}"))
        #expect(text.contains("usage: demo "))
    }

    @Test("--help anywhere prints the help; --version alone prints the version")
    func helpAndVersion() {
        #expect(commandLine.outcome(["--bogus", "--help"]) == .print(commandLine.help))
        #expect(commandLine.outcome(["-h"]) == .print(commandLine.help))
        #expect(commandLine.outcome(["--version"]) == .print("demo \(WarrenVersion.string)"))
        #expect(commandLine.help.contains("  AMQP_URL  (amqp://…) the broker"))
        #expect(commandLine.help.contains("demo grant-admin <email>  make an admin"))
    }
}
