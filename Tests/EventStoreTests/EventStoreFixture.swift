import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// The real `event-store` executable in its own vhost with its own database, a connection to
/// that vhost, and a client for `events.query`.
final class EventStoreFixture: Sendable {
    let vhost: TestVhost
    let folder: TemporaryDirectory
    let port = freePort()
    let connection: AMQPConnection
    let channel: AMQPChannel
    let publisher: EventPublisher
    let rpc: RPCClient
    private let process = Mutex<ServiceProcess?>(nil)

    private init(vhost: TestVhost, folder: TemporaryDirectory, connection: AMQPConnection) async throws {
        self.vhost = vhost
        self.folder = folder
        self.connection = connection
        channel = try await connection.openChannel()
        publisher = try await EventPublisher.start(connection: connection)
        rpc = try await RPCClient.start(connection: connection)
        // Keeps the calls' deadlines until `close()` ends it.
        Task { [rpc] in await rpc.run() }
    }

    /// Runs `body` against a fresh event store, then stops it and deletes its vhost and files.
    static func with<T>(_ body: (EventStoreFixture) async throws -> T) async throws -> T {
        try await withVhost("test-events") { vhost in
            let folder = try TemporaryDirectory()
            defer { folder.remove() }
            var configuration = try AMQPConfiguration(url: vhost.url)
            configuration.connectionName = "test-\(vhost.name)"
            let connection = try await AMQPConnection.connect(configuration)
            do {
                let fixture = try await EventStoreFixture(vhost: vhost, folder: folder, connection: connection)
                try await fixture.start()
                let result = try await body(fixture)
                await fixture.stop()
                return result
            } catch {
                await connection.close()
                throw error
            }
        }
    }

    /// The executable under test: the debug build, or with `EVENT_STORE_BUILD=release` the release one.
    static var executable: String {
        ProcessInfo.processInfo.environment["EVENT_STORE_BUILD"].map { "../\($0)/event-store" } ?? "event-store"
    }

    var databasePath: String { folder.url.appendingPathComponent("events.sqlite").path }

    /// Starts the process (again, after `stopProcess`, on the same database) and waits until it consumes.
    func start() async throws {
        let child = try ServiceProcess(Self.executable, environment: ["AMQP_URL": vhost.url, "DATABASE_PATH": databasePath], port: port)
        process.withLock { $0 = child }
        try await waitUntilReady(child)
    }

    /// SIGTERM, and waits for the exit.
    func stopProcess() async {
        await process.withLock({ $0 })?.stop()
    }

    /// Ready once both its queues have their consumer: events published from then on are kept.
    private func waitUntilReady(_ child: ServiceProcess) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline, child.isRunning {
            let ingesting = try? await channel.inspectQueue("events.events")
            let serving = try? await channel.inspectQueue("events.rpc")
            if let ingesting, let serving, ingesting.consumerCount > 0, serving.consumerCount > 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("event-store did not start consuming within 30 s:\n\(child.log)")
        throw CancellationError()
    }

    private func stop() async {
        await stopProcess()
        await rpc.close()
        await connection.close()
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

    /// The number of messages in `events.events.dlq` once there is any, or 0 after `timeout`
    /// (parking is asynchronous).
    func parkedCount(within timeout: Duration = .seconds(10)) async throws -> UInt32 {
        let deadline = ContinuousClock.now + timeout
        var parked = try await channel.inspectQueue("events.events.dlq").messageCount
        while parked == 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            parked = try await channel.inspectQueue("events.events.dlq").messageCount
        }
        return parked
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
