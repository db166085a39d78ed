import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// A RabbitMQ vhost of a test's own: its queues and exchanges cannot meet another test's, and
/// deleting it leaves the broker as it was.
struct OwnVhost {
    let name = "test-events-\(UUID().uuidString.prefix(8).lowercased())"

    /// `Broker.url` with this vhost.
    var url: String {
        let base = Broker.url
        guard let scheme = base.range(of: "://") else { return base }
        let authority = base[scheme.upperBound...].prefix { $0 != "/" && $0 != "?" }
        return String(base[..<scheme.upperBound]) + authority + "/" + name
    }

    func create() throws {
        try Self.rabbitmqctl(["add_vhost", name])
        try Self.rabbitmqctl(["set_permissions", "-p", name, "guest", ".*", ".*", ".*"])
    }

    func delete() {
        try? Self.rabbitmqctl(["delete_vhost", name])
    }

    private static func rabbitmqctl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/rabbitmqctl")
        process.arguments = ["-q"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 { throw CocoaError(.executableLoad, userInfo: ["rabbitmqctl": arguments]) }
    }
}

/// The real `event-store` executable in its own vhost with its own database, a connection to
/// that vhost, and a client for `events.query`.
final class EventStoreFixture: Sendable {
    let vhost: OwnVhost
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("warren-events-\(UUID().uuidString.prefix(8))")
    let port = Int.random(in: 30_000..<45_000)
    private let process = Mutex<Process?>(nil)
    let connection: AMQPConnection
    let channel: AMQPChannel
    let publisher: EventPublisher
    let rpc: RPCClient

    private init(connection: AMQPConnection, channel: AMQPChannel, publisher: EventPublisher, rpc: RPCClient, vhost: OwnVhost) {
        self.connection = connection
        self.channel = channel
        self.publisher = publisher
        self.rpc = rpc
        self.vhost = vhost
    }

    /// Runs `body` against a fresh event store, then stops it and deletes its vhost and files.
    static func with<T>(_ body: (EventStoreFixture) async throws -> T) async throws -> T {
        let vhost = OwnVhost()
        try vhost.create()
        var configuration = try AMQPConfiguration(url: vhost.url)
        configuration.connectionName = "test-\(vhost.name)"
        let connection = try await AMQPConnection.connect(configuration)
        let fixture = EventStoreFixture(
            connection: connection, channel: try await connection.openChannel(),
            publisher: try await EventPublisher.start(connection: connection), rpc: try await RPCClient.start(connection: connection),
            vhost: vhost)
        do {
            try await fixture.start()
            let result = try await body(fixture)
            await fixture.stop()
            return result
        } catch {
            await fixture.stop()
            throw error
        }
    }

    /// The executable under test: `EVENT_STORE_BINARY`, or the debug build.
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["EVENT_STORE_BINARY"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug/event-store").standardized
    }

    var databasePath: String { folder.appendingPathComponent("events.sqlite").path }

    /// Starts the process (again, after `stopProcess`, on the same database) and waits until it consumes.
    func start() async throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let child = Process()
        child.executableURL = Self.binary
        var environment = ProcessInfo.processInfo.environment
        environment["AMQP_URL"] = vhost.url
        environment["HTTP_PORT"] = "\(port)"
        environment["DATABASE_PATH"] = databasePath
        environment["LOG_FORMAT"] = "json"
        child.environment = environment
        // A file, never an inherited pipe: a pipe held by the child would hang `swift test`.
        let log = folder.appendingPathComponent("event-store.log")
        if !FileManager.default.fileExists(atPath: log.path) { _ = FileManager.default.createFile(atPath: log.path, contents: nil) }
        let output = try FileHandle(forWritingTo: log)
        try output.seekToEnd()
        child.standardOutput = output
        child.standardError = FileHandle.nullDevice
        try child.run()
        process.withLock { $0 = child }
        try await waitUntilReady(child)
    }

    /// SIGTERM, and waits for the exit.
    func stopProcess() {
        guard let child = process.withLock({ $0 }) else { return }
        if child.isRunning { child.terminate() }
        child.waitUntilExit()
    }

    /// Ready once both its queues have their consumer: events published from then on are kept.
    private func waitUntilReady(_ child: Process) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, child.isRunning {
            let ingesting = try? await channel.inspectQueue("events.events")
            let serving = try? await channel.inspectQueue("events.rpc")
            if let ingesting, let serving, ingesting.consumerCount > 0, serving.consumerCount > 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("event-store did not start consuming within 30 s; its log: \(folder.path)/event-store.log")
        throw CancellationError()
    }

    private func stop() async {
        stopProcess()
        await rpc.close()
        await connection.close()
        vhost.delete()
        try? FileManager.default.removeItem(at: folder)
    }

    /// `events.query` with `request` as its JSON body: the reply's body as JSON, or the error.
    func query(_ request: [String: Any]) async throws -> Result<[String: Any], ServiceError> {
        let body = try JSONSerialization.data(withJSONObject: request)
        let reply = try await rpc.call("events.query", body: body, timeout: .seconds(30))
        if reply.isError {
            return .failure(try WireJSON.decode(ErrorBody.self, from: reply.body).error)
        }
        return .success(try #require(try JSONSerialization.jsonObject(with: reply.body) as? [String: Any]))
    }

    /// Every event matching `filter`, page after page of `pageSize`.
    func all(_ filter: [String: Any] = [:], pageSize: Int = 1000) async throws -> [[String: Any]] {
        var events: [[String: Any]] = []
        var request = filter
        request["limit"] = pageSize
        while true {
            let page = try await query(request).get()
            events += try #require(page["events"] as? [[String: Any]])
            guard let next = page["next"] as? String else { return events }
            request["after"] = next
        }
    }

    /// Waits until `filter` matches `count` events (ingestion is asynchronous), then returns them.
    func waitFor(_ count: Int, _ filter: [String: Any] = [:], within timeout: Duration = .seconds(30)) async throws -> [[String: Any]] {
        let deadline = ContinuousClock.now + timeout
        var events = try await all(filter)
        while events.count < count, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            events = try await all(filter)
        }
        return events
    }

    /// A counter or gauge from the process's `/metrics`, 0 when it is not there yet.
    func metric(_ name: String) async throws -> Double {
        let (data, _) = try await URLSession.shared.data(from: try #require(URL(string: "http://127.0.0.1:\(port)/metrics")))
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("\(name) ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    private struct ErrorBody: Decodable {
        var error: ServiceError
    }
}
