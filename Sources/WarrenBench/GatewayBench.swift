import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Glibc

/// `warren-bench gateway`: HTTP through `api-gateway` to `user-service` and back, measured by
/// wrk, beside the raw request/reply ceiling of the C program in the same run.
struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "GET /users/{id} through api-gateway with wrk, against the C request/reply ceiling.",
        discussion: """
            Starts user-service and api-gateway (from --build-dir, release builds) in a vhost of its
            own, registers a user, takes a token, runs wrk at --connections against GET /users/{id}
            with the service queues as quorum queues (the default), reads the gateway's RSS with
            1,000 keep-alive connections open, runs wrk again with user-service started anew on
            classic queues (AMQP_QUEUE_TYPE=classic, the C ceiling's queue type), then the C
            program's rpc case at 64 in flight on a classic and on a quorum queue. The targets are
            checked for both queue types. With --stand-in it runs wrk again on each queue type
            with user-service replaced by two instances of that C program
            (bench/users_responder.c), which answer at almost no cost: what the gateway and the
            broker alone reach on this machine. Last it prints the CPU per request (wrk's
            included) that each run needed against what the machine's cores give each request
            at the Node design's rate: a run that needs more cannot reach that rate.
            Needs wrk and rabbitmqctl on this machine.
            Example: make bench, or
              warren-bench gateway --json --c-program .build/amqp-bench-c --stand-in .build/users-responder
            """
    )

    @Option(help: "Broker URL (its vhost is replaced by one of the benchmark's own).")
    var url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"

    @Option(help: "Seconds measured by wrk and by the C program, after a 2 s warm-up.")
    var seconds = 10

    @Option(help: "wrk connections.")
    var connections = 64

    @Option(help: "Folder with api-gateway and user-service.")
    var buildDir = ".build/release"

    @Option(help: "Path of the compiled C baseline; without it there is no ratio.")
    var cProgram: String?

    @Option(help: "Path of the compiled bench/users_responder.c; with it, a second run measures the gateway without the real service.")
    var standIn: String?

    @Option(help: "Keep-alive connections held open while the gateway's RSS is read.")
    var openConnections = 1000

    @Option(help: "The gateway's LOG_LEVEL (info writes one access line per request).")
    var logLevel = "info"

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(help: "Node.js, for the article's brokerless design (bench/node_gateway.js and node_users.js).")
    var node = "/usr/bin/node"

    @Option(help: "Folder with node_gateway.js and node_users.js.")
    var benchDir = "bench"

    func validate() throws {
        guard FileManager.default.isExecutableFile(atPath: node) else {
            throw ValidationError("\(node) is missing: install Node.js (`apt-get install -y nodejs`) or pass --node")
        }
        if let standIn, !FileManager.default.isExecutableFile(atPath: standIn) {
            throw ValidationError("\(standIn) is missing: build it with `cc -O2 -o \(standIn) bench/users_responder.c -lrabbitmq` (make bench does)")
        }
    }

    func run() async throws {
        WarrenBench.bootstrapLogging()
        raiseFileLimit()
        let vhost = "warren-bench-\(getpid())"
        try rabbitmqctl(["add_vhost", vhost])
        defer { _ = try? rabbitmqctl(["delete_vhost", vhost]) }
        try rabbitmqctl(["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
        let vhostURL = Self.replacingVhost(of: url, with: vhost)
        let port = Int.random(in: 20_000..<30_000)
        let data = FileManager.default.temporaryDirectory.appendingPathComponent(vhost)
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: data) }

        let secret = "bench-\(UUID().uuidString)-\(UUID().uuidString)"
        let common = ["AMQP_URL": vhostURL, "LOG_FORMAT": "json", "DATA_DIR": data.path]
        let usersEnvironment = common.merging(["HTTP_PORT": "\(port + 1)", "BCRYPT_COST": "4", "LOG_LEVEL": "info", "AMQP_QUEUE_TYPE": "quorum"]) { $1 }
        let users = try Child("\(buildDir)/user-service", environment: usersEnvironment, log: data.appendingPathComponent("users.log"))
        defer { users.stop() }
        let gateway = try Child(
            "\(buildDir)/api-gateway",
            environment: common.merging(["HTTP_PORT": "\(port)", "RATE_LIMIT_PER_SECOND": "0", "JWT_SECRET": secret, "LOG_LEVEL": logLevel]) { $1 },
            log: data.appendingPathComponent("gateway.log"))
        defer { gateway.stop() }
        try await users.waitForLog(#""msg":"serving""#)
        let base = "http://127.0.0.1:\(port)"
        try await gateway.waitForHTTP("\(base)/openapi.yaml")
        let (userID, token) = try await Self.registerUser(base)
        let userJSON = try await Self.get("\(base)/users/\(userID)", token: token)
        let rssIdle = gateway.rssMegabytes()

        // Warm-up, then the measured run, with the CPU each process spent during it.
        let broker = Self.brokerPID()
        let (http, cpu) = try measure(
            base: base, path: "/users/\(userID)", token: token,
            processes: ["gateway": gateway.process.processIdentifier, "user_service": users.process.processIdentifier, "broker": broker])
        let threads = cpu.threadMicrosecondsPerRequest(http["requests"] ?? 0)
        let rssAfterLoad = gateway.rssMegabytes()
        // Three bursts of connections opened, used and closed, then the measured one held open.
        var rssBursts: [Double] = []
        for _ in 0..<3 {
            rssBursts.append(try holdConnections(port: port, path: "/users/\(userID)", token: token, count: openConnections) { gateway.rssMegabytes() })
        }
        let rssOpen = try holdConnections(port: port, path: "/users/\(userID)", token: token, count: openConnections) {
            gateway.rssMegabytes()
        }
        // The C stand-in in place of user-service, on each queue type: what the gateway and the
        // broker alone can do, so what is left of the Node design's rate for the service.
        var quorumStandInRun: [String: Double]?
        if let standIn {
            quorumStandInRun = try await measureWithStandIn(
                standIn, base: base, userID: userID, token: token, url: vhostURL, replacing: users, gateway: gateway, broker: broker, logs: data)
        }
        let classic = try await measureWithClassicQueues(
            base: base, userID: userID, token: token, vhost: vhost, environment: usersEnvironment, replacing: users, gateway: gateway, broker: broker, logs: data)
        var standInRun: [String: Double]?
        if let standIn {
            standInRun = try await measureWithStandIn(
                standIn, base: base, userID: userID, token: token, url: vhostURL, replacing: classic.users, gateway: gateway, broker: broker, logs: data)
        }
        classic.users.stop()
        gateway.stop()

        let ceiling = try cProgram.map { try WarrenBench.runC($0, ["rpc", "--inflight", "64", "--seconds", "\(seconds)"], url: url) }
        // The same C program on a quorum queue: the broker's ceiling for Warren's default queues.
        let quorumCeiling = try cProgram.map {
            try WarrenBench.runC($0, ["rpc", "--inflight", "64", "--seconds", "\(seconds)", "--queue-type", "quorum"], url: url)
        }
        let node = try await measureNode(userID: userID, userJSON: userJSON, token: token, secret: secret, port: port + 2, logs: data)

        var result: [String: Any] = [
            "gateway": http, "connections": connections, "log_level": logLevel, "node_brokerless": node,
            "cpu_us_per_request_by_thread": threads,
            "rss_mb": [
                "idle": rssIdle, "after_load": rssAfterLoad, "with_\(openConnections)_connections": rssOpen,
                "with_\(openConnections)_connections_in_bursts": rssBursts,
            ] as [String: Any],
        ]
        result["gateway_classic_queues"] = classic.run
        if let ceiling { result["c_rpc_inflight_64"] = ceiling }
        if let quorumCeiling { result["c_rpc_inflight_64_quorum_queue"] = quorumCeiling }
        var targets: [(String, String, Bool)] = []
        // The targets for both queue types: quorum (the default, replicated in a cluster) and
        // classic (AMQP_QUEUE_TYPE=classic). Each is also set against the C ceiling on a queue of
        // its own type; the issue's ceiling is the classic one.
        for (label, run, key) in [("quorum queues", http, ""), ("classic queues", classic.run, "_classic_queues")] {
            let rate = run["requests_per_sec"] ?? 0
            if let cRate = ceiling?["requests_per_sec"], cRate > 0 {
                let ratio = (rate / cRate * 1000).rounded() / 1000
                result["ratio\(key)"] = ratio
                targets.append(("Warren (\(label)) ≥ 0.4× the C ceiling (classic queue)", String(format: "%.3f×", ratio), ratio >= 0.4))
            }
            if key.isEmpty, let cRate = quorumCeiling?["requests_per_sec"], cRate > 0 {
                let ratio = (rate / cRate * 1000).rounded() / 1000
                result["ratio_to_quorum_ceiling"] = ratio
                targets.append(("Warren (\(label)) ≥ 0.4× the C ceiling on a quorum queue", String(format: "%.3f×", ratio), ratio >= 0.4))
            }
            if let nodeRate = node["requests_per_sec"], nodeRate > 0 {
                let ratio = (rate / nodeRate * 1000).rounded() / 1000
                result["ratio_to_node\(key)"] = ratio
                targets.append(("Warren (\(label)) ≥ 1.0× the Node brokerless design", String(format: "%.3f×", ratio), ratio >= 1.0))
            }
            if let p50 = run["p50_ms"], let p99 = run["p99_ms"], p50 > 0 {
                targets.append(("Warren (\(label)) p99 ≤ 2.5× p50", String(format: "%.2f / %.2f ms = %.2f×", p99, p50, p99 / p50), p99 <= 2.5 * p50))
            }
        }
        let worstRSS = max(rssOpen, rssBursts.max() ?? 0)
        targets.append(("gateway RSS ≤ 64 MB with \(openConnections) connections, after 3 bursts", String(format: "%.1f MB", worstRSS), worstRSS <= 64))
        for (key, run) in [("gateway_with_c_stand_in", standInRun), ("gateway_with_c_stand_in_quorum_queue", quorumStandInRun)] {
            guard var run, let rate = run["requests_per_sec"] else { continue }
            if let cRate = ceiling?["requests_per_sec"], cRate > 0 { run["ratio"] = (rate / cRate * 1000).rounded() / 1000 }
            if let nodeRate = node["requests_per_sec"], nodeRate > 0 { run["ratio_to_node"] = (rate / nodeRate * 1000).rounded() / 1000 }
            result[key] = run
        }
        result["targets"] = Dictionary(uniqueKeysWithValues: targets.map { ($0.0, ["value": $0.1, "pass": $0.2] as [String: Any]) })
        if json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
        func cpuText(_ run: [String: Double], _ names: [String]) -> String {
            names.compactMap { name in run["cpu_us_per_request_\(name)"].map { String(format: "%@ %.1f µs", name, $0) } }.joined(separator: ", ")
        }
        print("")
        print("GET /users/{id}, wrk -t2 -c\(connections), \(seconds) s, one run:")
        for (label, run) in [("quorum queues, the default", http), ("classic queues", classic.run)] {
            print(String(format: "  Warren (gateway → broker → user-service; %@): %.0f req/s, p50 %.2f ms, p99 %.2f ms; CPU per request: %@",
                label, run["requests_per_sec"] ?? 0, run["p50_ms"] ?? 0, run["p99_ms"] ?? 0, cpuText(run, ["gateway", "user_service", "broker"])))
        }
        for process in ["gateway", "user_service", "broker"] {
            guard let byThread = threads[process], !byThread.isEmpty else { continue }
            let text = byThread.sorted { $0.value > $1.value }.prefix(6).map { String(format: "%@ %.1f", $0.key, $0.value) }.joined(separator: ", ")
            print("    \(process) by thread (µs per request, quorum run): \(text)")
        }
        print(String(format: "  Node brokerless (gateway → user service over HTTP): %.0f req/s, p50 %.2f ms, p99 %.2f ms; CPU per request: %@",
            node["requests_per_sec"] ?? 0, node["p50_ms"] ?? 0, node["p99_ms"] ?? 0, cpuText(node, ["node_gateway", "node_users"])))
        print(String(format: "  C request/reply ceiling (64 in flight): %.0f req/s on a classic queue, %.0f req/s on a quorum queue",
            ceiling?["requests_per_sec"] ?? 0, quorumCeiling?["requests_per_sec"] ?? 0))
        for (key, label) in [("gateway_with_c_stand_in_quorum_queue", "quorum queue"), ("gateway_with_c_stand_in", "classic queue")] {
            guard let standIn = result[key] as? [String: Double] else { continue }
            print(String(format: "  Warren with the C stand-in for user-service (%@): %.0f req/s (%.2f× the Node design), p50 %.2f ms, p99 %.2f ms; CPU per request: %@",
                label, standIn["requests_per_sec"] ?? 0, standIn["ratio_to_node"] ?? 0, standIn["p50_ms"] ?? 0, standIn["p99_ms"] ?? 0,
                cpuText(standIn, ["gateway", "stand_in", "broker", "wrk"])))
        }
        // The arithmetic behind the ratio: at the Node design's rate, this machine's cores give
        // each request so much CPU, and a run that needs more cannot reach that rate.
        if let nodeRate = node["requests_per_sec"], nodeRate > 0 {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            print(String(format: "  CPU at the Node design's rate: %d cores give %.0f µs per request (wrk's included); needed:", cores, Double(cores) * 1e6 / nodeRate))
            let runs: [(String, [String: Double]?, [String])] = [
                ("Warren, quorum queues", http, ["gateway", "user_service", "broker", "wrk"]),
                ("Warren, classic queues", classic.run, ["gateway", "user_service", "broker", "wrk"]),
                ("C stand-in, quorum queue", quorumStandInRun, ["gateway", "stand_in", "broker", "wrk"]),
                ("C stand-in, classic queue", standInRun, ["gateway", "stand_in", "broker", "wrk"]),
                ("Node design", node, ["node_gateway", "node_users", "wrk"]),
            ]
            for (label, run, names) in runs {
                guard let run else { continue }
                let total = names.compactMap { run["cpu_us_per_request_\($0)"] }.reduce(0, +)
                print(String(format: "    %@: %.0f µs (%@)", label, total, cpuText(run, names)))
            }
        }
        print(String(format: "  gateway RSS: idle %.1f MB, after load %.1f MB, bursts %@ MB, with %d open %.1f MB",
            rssIdle, rssAfterLoad, rssBursts.map { String(format: "%.1f", $0) }.joined(separator: "/"), openConnections, rssOpen))
        for (name, value, pass) in targets {
            print("  \(pass ? "PASS" : "FAIL")  \(name): \(value)")
        }
    }

    /// The article's design on this machine: a Node gateway process proxying to a Node user
    /// service process (bench/node_gateway.js, bench/node_users.js), measured like Warren.
    func measureNode(userID: String, userJSON: String, token: String, secret: String, port: Int, logs: URL) async throws -> [String: Double] {
        let nodeUsers = try Child(node, arguments: ["\(benchDir)/node_users.js", "\(port + 1)", userJSON], environment: [:], log: logs.appendingPathComponent("node-users.log"))
        defer { nodeUsers.stop() }
        let nodeGateway = try Child(
            node, arguments: ["\(benchDir)/node_gateway.js", "\(port)", "\(port + 1)"], environment: ["JWT_SECRET": secret],
            log: logs.appendingPathComponent("node-gateway.log"))
        defer { nodeGateway.stop() }
        try await nodeUsers.waitForLog("listening")
        try await nodeGateway.waitForLog("listening")
        let base = "http://127.0.0.1:\(port)"
        return try measure(
            base: base, path: "/users/\(userID)", token: token,
            processes: ["node_gateway": nodeGateway.process.processIdentifier, "node_users": nodeUsers.process.processIdentifier]
        ).run
    }

    /// The broker's process (RabbitMQ's Erlang VM, `beam.smp`), for its CPU; nil if not on this
    /// machine. Asked of the node `rabbitmqctl` talks to, as other nodes may run beside it.
    static func brokerPID() -> Int32? {
        if let output = try? rabbitmqctl(["eval", "os:getpid()."]), let pid = Int32(output.filter(\.isNumber)) { return pid }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for entry in entries {
            guard let pid = Int32(entry), let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8) else { continue }
            if comm.hasPrefix("beam.smp") { return pid }
        }
        return nil
    }

    // MARK: - Steps

    /// Stops `users`, deletes its quorum queues and starts it again with `AMQP_QUEUE_TYPE=classic`
    /// (same database, so the user and the token stay valid), then measures like the first run.
    /// Returns the new process, which the caller stops.
    func measureWithClassicQueues(
        base: String, userID: String, token: String, vhost: String, environment: [String: String], replacing users: Child, gateway: Child,
        broker: Int32?, logs: URL
    ) async throws -> (run: [String: Double], users: Child) {
        users.stop()
        for line in try rabbitmqctl(["list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name"]).split(separator: "\n") {
            let name = line.trimmingCharacters(in: .whitespaces)
            if name.hasPrefix("users.") { _ = try rabbitmqctl(["delete_queue", "-p", vhost, name]) }
        }
        let classic = try Child(
            "\(buildDir)/user-service", environment: environment.merging(["AMQP_QUEUE_TYPE": "classic"]) { $1 },
            log: logs.appendingPathComponent("users-classic.log"))
        do {
            try await classic.waitForLog(#""msg":"serving""#)
            let (run, _) = try measure(
                base: base, path: "/users/\(userID)", token: token,
                processes: ["gateway": gateway.process.processIdentifier, "user_service": classic.process.processIdentifier, "broker": broker])
            return (run, classic)
        } catch {
            classic.stop()
            throw error
        }
    }

    /// Stops `users` and answers `users.get` with two instances of the C stand-in (one alone
    /// answers one request at a time, so its round trips would set the pace), then runs wrk again.
    /// The CPU of the gateway, the stand-ins (summed as `stand_in`) and the broker is measured
    /// as in `measure`.
    func measureWithStandIn(
        _ program: String, base: String, userID: String, token: String, url: String, replacing users: Child, gateway: Child, broker: Int32?,
        logs: URL
    ) async throws -> [String: Double] {
        let user = try await Self.get("\(base)/users/\(userID)", token: token)
        users.stop()
        let standIns = try (1...2).map { instance in
            try Child(program, arguments: [url, user], environment: [:], log: logs.appendingPathComponent("stand-in-\(instance).log"))
        }
        defer { for standIn in standIns { standIn.stop() } }
        // The warm-up also covers the stand-ins' start: requests wait in users.rpc meanwhile.
        _ = try runWrk(base: base, path: "/users/\(userID)", token: token, seconds: 2)
        for standIn in standIns where !standIn.process.isRunning {
            throw ValidationError("\(program) exited: \((try? String(contentsOf: standIn.log, encoding: .utf8)) ?? "")")
        }
        var processes: [String: Int32?] = ["gateway": gateway.process.processIdentifier, "broker": broker]
        for (index, standIn) in standIns.enumerated() { processes["stand_in_\(index)"] = standIn.process.processIdentifier }
        let cpu = CPUSample(processes)
        var run = try runWrk(base: base, path: "/users/\(userID)", token: token, seconds: seconds)
        var standInTotal = 0.0
        for (name, microseconds) in cpu.microsecondsPerRequest(run["requests"] ?? 0) {
            if name.hasPrefix("stand_in_") { standInTotal += microseconds } else { run["cpu_us_per_request_\(name)"] = microseconds }
        }
        run["cpu_us_per_request_stand_in"] = (standInTotal * 10).rounded() / 10
        return run
    }

    static func registerUser(_ base: String) async throws -> (String, String) {
        let email = "bench-\(UUID().uuidString.prefix(8).lowercased())@example.com"
        let password = "bench password"
        let user = try await post("\(base)/users", ["name": "Bench", "email": email, "password": password])
        let token = try await post("\(base)/auth/token", ["email": email, "password": password])
        guard let id = user["id"] as? String, let access = token["access_token"] as? String else {
            throw ValidationError("could not register a user and get a token: \(user) \(token)")
        }
        return (id, access)
    }

    /// The body of a GET with the token, as text.
    static func get(_ address: String, token: String) async throws -> String {
        guard let url = URL(string: address) else { throw ValidationError("bad URL \(address)") }
        var request = URLRequest(url: url)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else {
            throw ValidationError("GET \(address) answered \(String(decoding: data, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func post(_ address: String, _ body: [String: String]) async throws -> [String: Any] {
        guard let url = URL(string: address) else { throw ValidationError("bad URL \(address)") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONSerialization.data(withJSONObject: body)
        let (data, _) = try await URLSession.shared.data(for: request)
        return (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// A 2 s warm-up, then wrk for `seconds` with the CPU `processes` spent meanwhile: the run
    /// with each one's `cpu_us_per_request_<name>`, and the sample (for the threads' share).
    func measure(base: String, path: String, token: String, processes: [String: Int32?]) throws -> (run: [String: Double], cpu: CPUSample) {
        _ = try runWrk(base: base, path: path, token: token, seconds: 2)
        let cpu = CPUSample(processes)
        var run = try runWrk(base: base, path: path, token: token, seconds: seconds)
        for (name, microseconds) in cpu.microsecondsPerRequest(run["requests"] ?? 0) { run["cpu_us_per_request_\(name)"] = microseconds }
        return (run, cpu)
    }

    /// wrk with a Lua `done` hook that prints the latency percentiles as JSON.
    func runWrk(base: String, path: String, token: String, seconds: Int) throws -> [String: Double] {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("warren-wrk-\(getpid()).lua")
        try Self.wrkScript.write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        // wrk's own CPU is part of what the machine spends per request: from the children's usage
        // (wrk is the only child that ends meanwhile).
        let before = Self.childrenCPUSeconds()
        let output = try runProgram(
            "/usr/bin/wrk",
            ["-t2", "-c\(connections)", "-d\(seconds)s", "-s", script.path, "-H", "Authorization: Bearer \(token)", "\(base)\(path)"])
        let wrkSeconds = Self.childrenCPUSeconds() - before
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else { throw ValidationError("wrk printed no result:\n\(output)") }
        var run = object.compactMapValues { ($0 as? NSNumber)?.doubleValue }
        if let requests = run["requests"], requests > 0 { run["cpu_us_per_request_wrk"] = (wrkSeconds * 1e6 / requests * 10).rounded() / 10 }
        return run
    }

    /// User and system CPU of the ended children, in seconds.
    static func childrenCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static let wrkScript = """
        done = function(summary, latency, requests)
          local seconds = summary.duration / 1e6
          local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
          io.write(string.format('{"requests_per_sec":%.0f,"requests":%d,"errors":%d,"non_2xx":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\\n',
            summary.requests / seconds, summary.requests, errors, summary.errors.status,
            latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
        end
        """

    /// Opens `count` connections, sends one keep-alive request on each and reads the answer,
    /// then calls `measure` while they are all still open.
    func holdConnections(port: Int, path: String, token: String, count: Int, measure: () -> Double) throws -> Double {
        var sockets: [Int32] = []
        defer { for socket in sockets { close(socket) } }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nConnection: keep-alive\r\n\r\n".utf8)
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw ValidationError("socket() failed: errno \(errno); raise `ulimit -n`") }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { throw ValidationError("connect() failed: errno \(errno)") }
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        for fd in sockets { _ = recv(fd, &buffer, buffer.count, 0) }
        return measure()
    }

    private func raiseFileLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    static func replacingVhost(of url: String, with vhost: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let authorityEnd = url[scheme.upperBound...].firstIndex(of: "/") ?? url.endIndex
        return "\(url[..<authorityEnd])/\(vhost)"
    }
}

/// CPU time (user + system, from /proc/PID/stat) of some processes since the sample was taken,
/// and of their threads by name (/proc/PID/task/TID/stat): where each process spends it.
struct CPUSample {
    let start: [String: (pid: Int32, ticks: Double)]
    let threadStart: [String: [String: Double]]

    init(_ processes: [String: Int32?]) {
        var start: [String: (pid: Int32, ticks: Double)] = [:]
        var threadStart: [String: [String: Double]] = [:]
        for (name, pid) in processes {
            if let pid, let ticks = Self.ticks(pid) {
                start[name] = (pid, ticks)
                threadStart[name] = Self.threadTicks(pid)
            }
        }
        self.start = start
        self.threadStart = threadStart
    }

    /// Microseconds of CPU per request of each process's threads, summed by thread name (a
    /// pool's threads share one), for those that spent at least 1 µs per request.
    func threadMicrosecondsPerRequest(_ requests: Double) -> [String: [String: Double]] {
        guard requests > 0 else { return [:] }
        let perSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        var result: [String: [String: Double]] = [:]
        for (name, sample) in start {
            let before = threadStart[name] ?? [:]
            var threads: [String: Double] = [:]
            for (thread, ticks) in Self.threadTicks(sample.pid) {
                let microseconds = ((ticks - (before[thread] ?? 0)) / perSecond * 1e6 / requests * 10).rounded() / 10
                if microseconds >= 1 { threads[thread] = microseconds }
            }
            result[name] = threads
        }
        return result
    }

    /// Ticks by thread name (summed over threads of one name), for threads alive now.
    static func threadTicks(_ pid: Int32) -> [String: Double] {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return [:] }
        var result: [String: Double] = [:]
        for task in tasks {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")"), open < close
            else { continue }
            let name = String(stat[stat.index(after: open)..<close])
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
            result[name, default: 0] += user + system
        }
        return result
    }

    /// Microseconds of CPU per request, for each process, over `requests` requests.
    func microsecondsPerRequest(_ requests: Double) -> [String: Double] {
        guard requests > 0 else { return [:] }
        let perSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        var result: [String: Double] = [:]
        for (name, sample) in start {
            guard let now = Self.ticks(sample.pid) else { continue }
            result[name] = ((now - sample.ticks) / perSecond * 1e6 / requests * 10).rounded() / 10
        }
        return result
    }

    /// utime + stime in clock ticks: fields 14 and 15, counted after the command's closing parenthesis.
    static func ticks(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return user + system
    }
}

/// A process the benchmark started, with its output in a file.
final class Child {
    let process = Process()
    let log: URL

    init(_ path: String, arguments: [String] = [], environment: [String: String], log: URL) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ValidationError("\(path) is missing: build it with `swift build -c release --product \(URL(fileURLWithPath: path).lastPathComponent)`")
        }
        self.log = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = process.standardOutput
        try process.run()
    }

    func waitForLog(_ text: String, within seconds: Double = 60) async throws {
        let deadline = Date() + seconds
        while Date() < deadline {
            if let content = try? String(contentsOf: log, encoding: .utf8), content.contains(text) { return }
            guard process.isRunning else { throw ValidationError("\(process.executableURL?.path ?? "") exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ValidationError("\(process.executableURL?.path ?? "") did not log \(text) within \(seconds) s")
    }

    /// Polls `address` until it answers 200 (the gateway logs nothing at warning level).
    func waitForHTTP(_ address: String, within seconds: Double = 60) async throws {
        guard let url = URL(string: address) else { throw ValidationError("bad URL \(address)") }
        let deadline = Date() + seconds
        while Date() < deadline {
            if let (_, response) = try? await URLSession.shared.data(from: url), (response as? HTTPURLResponse)?.statusCode == 200 { return }
            guard process.isRunning else { throw ValidationError("\(process.executableURL?.path ?? "") exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ValidationError("nothing answered \(address) within \(seconds) s")
    }

    /// VmRSS from /proc, in MB.
    func rssMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return (kilobytes / 1024 * 10).rounded() / 10
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

@discardableResult
func rabbitmqctl(_ arguments: [String]) throws -> String {
    try runProgram("/usr/sbin/rabbitmqctl", arguments)
}

/// Runs a program to its end and returns its standard output; throws if it fails.
func runProgram(_ path: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ValidationError("\(path) \(arguments.joined(separator: " ")) failed (exit \(process.terminationStatus))")
    }
    return String(decoding: data, as: UTF8.self)
}

extension WarrenBench {
    /// Runs the C baseline with `arguments` and returns the numbers of its JSON output.
    static func runC(_ program: String, _ arguments: [String], url: String) throws -> [String: Double] {
        let output = try runProgram(program, arguments + ["--url", url])
        guard let object = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any] else {
            throw ValidationError("\(program) printed no JSON")
        }
        return object.compactMapValues { ($0 as? NSNumber)?.doubleValue }
    }
}
