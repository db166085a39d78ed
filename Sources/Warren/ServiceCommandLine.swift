import Foundation

/// The command line of a Warren service binary: `--help` (what it serves, its environment
/// variables with their defaults, its subcommands), `--version`, and a usage error for anything
/// else — all answered before any connection or database is opened, so that an operator who
/// asks a binary what it does never gets a running instance consuming a queue instead.
///
/// A service declares its command line once, as data, and calls `resolve()` first thing in
/// `main`: it returns `.serve` (no arguments), or `.subcommand` for one the service declared,
/// and otherwise prints and returns `.exit` with the status for `main` to exit with (0 for
/// `--help`/`--version`, `usageStatus` for a usage error): a library never exits.
public struct ServiceCommandLine: Sendable {
    /// An environment variable the binary reads, as `--help` lists it.
    public struct Variable: Sendable, Equatable {
        public var name: String
        /// The value used when unset, in words if it is not a literal (`"none"`, `"json off a terminal"`).
        public var defaultValue: String
        public var meaning: String

        public init(_ name: String, _ defaultValue: String, _ meaning: String) {
            self.name = name
            self.defaultValue = defaultValue
            self.meaning = meaning
        }
    }

    /// A subcommand: its synopsis (`grant-admin <email>`) and one line about it.
    public struct Subcommand: Sendable, Equatable {
        public var synopsis: String
        public var summary: String
        /// The word that selects it: the synopsis's first word.
        public var name: String { String(synopsis.split(separator: " ").first ?? "") }

        public init(_ synopsis: String, _ summary: String) {
            self.synopsis = synopsis
            self.summary = summary
        }
    }

    /// What the caller does next.
    public enum Invocation: Sendable, Equatable {
        /// No arguments: run the service.
        case serve
        /// A declared subcommand, with every argument (its name first).
        case subcommand([String])
        /// `--help`, `--version` or a usage error, already printed: `main` exits with this status.
        case exit(Int32)
    }

    /// What the arguments ask for; `resolve()` acts on it, tests read it.
    public enum Outcome: Sendable, Equatable {
        case invocation(Invocation)
        /// Print to stdout and exit 0.
        case print(String)
        /// Print to stderr and exit `usageStatus`.
        case usageError(String)
    }

    /// The exit status of a usage error: 2, as `warren` and `user-service grant-admin` use.
    public static let usageStatus: Int32 = 2

    public var binary: String
    public var summary: String
    /// What the process serves, one line each (queues, HTTP port and paths).
    public var serves: [String]
    public var variables: [Variable]
    public var subcommands: [Subcommand]

    public init(binary: String, summary: String, serves: [String], variables: [Variable], subcommands: [Subcommand] = []) {
        self.binary = binary
        self.summary = summary
        self.serves = serves
        self.variables = variables
        self.subcommands = subcommands
    }

    /// Reads `arguments` (without the program name): prints for `--help`, `--version` and
    /// usage errors and returns `.exit`, else says what to run.
    public func resolve(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Invocation {
        switch outcome(arguments) {
        case .invocation(let invocation):
            return invocation
        case .print(let text):
            FileHandle.standardOutput.write(Data((text + "\n").utf8))
            return .exit(0)
        case .usageError(let text):
            FileHandle.standardError.write(Data((text + "\n").utf8))
            return .exit(Self.usageStatus)
        }
    }

    /// The decision alone, without printing or exiting.
    public func outcome(_ arguments: [String]) -> Outcome {
        guard let first = arguments.first else { return .invocation(.serve) }
        if subcommands.contains(where: { $0.name == first }) { return .invocation(.subcommand(arguments)) }
        if arguments.contains("--help") || arguments.contains("-h") { return .print(help) }
        if first == "--version" {
            guard arguments.count == 1 else { return .usageError("\(binary): unexpected argument \(String(reflecting: arguments[1])) after --version\n\(usage)") }
            return .print(versionLine)
        }
        // One line naming the argument (quoted as Swift would, so that control characters
        // cannot forge terminal output), then the usage.
        return .usageError("\(binary): unknown argument \(String(reflecting: first))\n\(usage)")
    }

    public var versionLine: String { "\(binary) \(WarrenVersion.string)" }

    /// The synopsis lines.
    public var usage: String {
        var lines = [(binary, "serve (until SIGTERM or SIGINT)")]
        lines += subcommands.map { ("\(binary) \($0.synopsis)", $0.summary) }
        lines += [("\(binary) --help", "this text"), ("\(binary) --version", "print the version")]
        return "usage: " + Self.columns(lines, indent: "").joined(separator: "\n       ")
    }

    public var help: String {
        var text = "\(versionLine): \(summary)\n\n\(usage)\n\nServes:\n"
        text += serves.map { "  " + $0 }.joined(separator: "\n")
        text += "\n\nEnvironment (default):\n"
        text += Self.columns(variables.map { ($0.name, "(\($0.defaultValue)) \($0.meaning)") }, indent: "  ").joined(separator: "\n")
        return text
    }

    private static func columns(_ rows: [(String, String)], indent: String) -> [String] {
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { indent + $0.0.padding(toLength: width + 2, withPad: " ", startingAt: 0) + $0.1 }
    }
}

extension ServiceCommandLine {
    /// What `ServiceHost.run` reads, for every service; `port` is the service's default `HTTP_PORT`.
    public static func hostVariables(port: Int) -> [Variable] {
        [
            Variable("AMQP_URL", "amqp://guest:guest@localhost:5672/", "the broker, or several nodes: amqp://u:p@host1:5672,host2:5672/ (README, Configuration)"),
            Variable("AMQP_QUEUE_TYPE", "quorum", "the type of the service's durable queues: quorum or classic"),
            Variable("AMQP_DELIVERY_LIMIT", "20", "quorum queues: returns of a message before the broker dead-letters it, 1 to 1000000"),
            Variable("HTTP_PORT", "\(port)", "where GET /health and GET /metrics are served"),
            Variable("LOG_LEVEL", "info", "trace, debug, info, notice, warning, error or critical"),
            Variable("LOG_FORMAT", "text on a terminal, else json", "json for JSON lines"),
            Variable("RPC_PREFETCH", "64", "requests taken ahead from the RPC queue, 1 to 65535"),
            Variable("RPC_CONCURRENCY", "64", "requests handled at once, 1 to 10000"),
            Variable("HANDLER_EXECUTOR", "io-thread", "where handlers run: io-thread (the broker connection's) or pool (Swift's shared pool)"),
            Variable("DRAIN_TIMEOUT_SECONDS", "10", "at SIGTERM, how long the requests in hand may take to finish"),
            Variable("HEALTH_STALL_SECONDS", "120", "/health reports a consumer holding deliveries this long with none finished as stalled"),
            Variable("OTEL_EXPORTER_OTLP_ENDPOINT", "none: no export", "export traces over OTLP (and the other standard OTEL_* variables)"),
        ]
    }

    /// What a service with its own database reads (`service` names the file, `users.sqlite`).
    public static func storageVariables(service: String, outbox: Bool = true) -> [Variable] {
        var variables = [
            Variable("DATABASE_URL", "none: SQLite", "postgres://user:password@host:5432/database: the service's PostgreSQL database"),
            Variable("DATABASE_PATH", "$DATA_DIR/\(service).sqlite", "the SQLite database file"),
            Variable("DATA_DIR", "data", "the folder of the SQLite database"),
        ]
        if outbox { variables.append(Variable("OUTBOX_RELAY", "on", "paused keeps new events in the outbox until a run without it")) }
        return variables
    }

    /// The HTTP line of `serves`.
    public static func httpLine(port: Int) -> String {
        "HTTP :\(port) (HTTP_PORT): GET /health (200 ok or 503 with what is down), GET /metrics (Prometheus text)"
    }
}
