import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// The domain services as real processes in a vhost of their own, with a client connection
/// and a tap queue that sees every event published in the vhost.
final class System: Sendable {
    let vhost: TestVhost
    let data: TemporaryDirectory
    let connection: AMQPConnection
    let rpc: RPCClient
    let channel: AMQPChannel
    let tap: EventTap
    let backend: StorageBackend
    private let processes = Mutex<[String: ServiceProcess]>([:])
    /// On PostgreSQL, each service's own database (by executable name), shared by its instances.
    private let databases = Mutex<[String: TestPostgresDatabase]>([:])

    static let allServices = ["user-service", "order-service", "payment-service"]

    private init(
        vhost: TestVhost, data: TemporaryDirectory, connection: AMQPConnection, rpc: RPCClient, channel: AMQPChannel, tap: EventTap,
        backend: StorageBackend
    ) {
        self.backend = backend
        self.vhost = vhost
        self.data = data
        self.connection = connection
        self.rpc = rpc
        self.channel = channel
        self.tap = tap
    }

    /// Starts `services` (executable names) and waits until each serves its queue. On
    /// `.postgres` each service gets a database of its own (`DATABASE_URL`), dropped by `stop()`.
    static func start(_ services: [String] = allServices, environment: [String: String] = [:], backend: StorageBackend = .sqlite) async throws -> System {
        let vhost = try TestVhost.create("services")
        let data = try TemporaryDirectory()
        var configuration = try AMQPConfiguration(url: vhost.url)
        configuration.connectionName = "service-tests"
        let connection = try await AMQPConnection.connect(configuration)
        let rpc = try await RPCClient.start(connection: connection, configuration: .init(defaultTimeout: .seconds(10)))
        // Keeps the calls' deadlines until `close()` ends it.
        Task { [rpc] in await rpc.run() }
        let channel = try await connection.openChannel()
        let tap = try await EventTap.start(connection: connection)
        let system = System(vhost: vhost, data: data, connection: connection, rpc: rpc, channel: channel, tap: tap, backend: backend)
        for service in services { try await system.launch(service, environment: environment) }
        return system
    }

    /// Starts one more process of `service`, with the system's vhost and data folder.
    @discardableResult
    func launch(
        _ service: String, environment: [String: String] = [:], instance: String = "", workingDirectory: URL? = nil, waitUntilReady: Bool = true
    ) async throws -> ServiceProcess {
        var merged = [
            "AMQP_URL": vhost.url, "DATA_DIR": data.path, "BCRYPT_COST": "4", "LOG_LEVEL": "debug",
        ]
        if backend == .postgres { merged["DATABASE_URL"] = try database(of: service).url }
        for (key, value) in environment { merged[key] = value }
        let process = try ServiceProcess(service, environment: merged, workingDirectory: workingDirectory)
        processes.withLock { $0[service + instance] = process }
        if waitUntilReady { try await process.waitUntilReady() }
        return process
    }

    /// The PostgreSQL database of `service` (created at its first launch).
    func database(of service: String) throws -> TestPostgresDatabase {
        if let database = databases.withLock({ $0[service] }) { return database }
        let database = try TestPostgresDatabase.create(service.replacingOccurrences(of: "-", with: "_"))
        databases.withLock { $0[service] = database }
        return database
    }

    /// The types of the events the event store holds for a flow, once it holds `count`.
    func recordedTypes(correlationID: String, atLeast count: Int) async throws -> [String] {
        let recorded = try await eventually("events.query", ["correlationId": correlationID]) { $0.objects("events").count >= count }
        return recorded.objects("events").compactMap { $0["type"] as? String }
    }

    func process(_ service: String) -> ServiceProcess? { processes.withLock { $0[service] } }

    func stop() async {
        for process in processes.withLock({ Array($0.values) }) { await process.stop() }
        await rpc.close()
        await connection.close()
        vhost.delete()
        data.remove()
        for database in databases.withLock({ Array($0.values) }) { database.drop() }
    }

    /// Calls an operation with a JSON object, returning the reply as JSON.
    func call(_ operation: String, _ body: [String: Any], correlationID: String? = nil) async throws -> Reply {
        let data = try JSONSerialization.data(withJSONObject: body)
        return try await callRaw(operation, data, correlationID: correlationID)
    }

    func callRaw(_ operation: String, _ body: Data, correlationID: String? = nil) async throws -> Reply {
        var envelope = Envelope()
        if let correlationID { envelope.correlationID = correlationID }
        let reply = try await rpc.call(operation, body: body, envelope: envelope)
        return Reply(isError: reply.isError, json: try JSONSerialization.jsonObject(with: reply.body) as? [String: Any] ?? [:])
    }

    /// Publishes `event` again straight into `queue` (past the exchange), twice: under its own
    /// message id, as a redelivery, and under a new one, as a copy; each confirmed by the broker.
    func republish(_ event: EventTap.Seen, to queue: String) async throws {
        let publisher = try await connection.openChannel()
        try await publisher.enableConfirms()
        for messageID in [event.messageID, UUID().uuidString.lowercased()] {
            try await publisher.publish(
                event.body, routingKey: queue, properties: AMQPProperties(contentType: "application/json", messageID: messageID, type: event.type))
        }
        await publisher.close()
    }

    /// Polls `operation` until `condition` holds on its reply or `timeout` passes.
    func eventually(
        _ operation: String, _ body: [String: Any], within timeout: Duration = .seconds(15), _ condition: (Reply) -> Bool
    ) async throws -> Reply {
        let deadline = ContinuousClock.now + timeout
        var reply = try await call(operation, body)
        while !condition(reply), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            reply = try await call(operation, body)
        }
        return reply
    }
}

struct Reply: @unchecked Sendable {
    let isError: Bool
    let json: [String: Any]

    var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    var errorMessage: String { (json["error"] as? [String: Any])?["message"] as? String ?? "" }
    subscript(key: String) -> Any? { json[key] }
    func string(_ key: String) -> String? { json[key] as? String }
    /// An array of objects, such as a page's items; empty when absent.
    func objects(_ key: String) -> [[String: Any]] { json[key] as? [[String: Any]] ?? [] }
}

/// Every event published to `warren.events` in the vhost, as it arrives.
final class EventTap: Sendable {
    struct Seen: Sendable {
        let type: String
        let messageID: String
        let correlationID: String?
        let aggregateID: String?
        let body: Data
    }

    private let seen = Mutex<[Seen]>([])

    static func start(connection: AMQPConnection) async throws -> EventTap {
        let tap = EventTap()
        let channel = try await connection.openChannel()
        try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
        let queue = "test.tap"
        _ = try await channel.declareQueue(queue, durable: false, exclusive: true, autoDelete: true)
        try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: "#")
        _ = try await channel.consume(queue: queue, noAck: true) { event in
            guard case .delivery(let delivery) = event else { return }
            let envelope = Envelope(delivery: delivery)
            let seen = Seen(
                type: delivery.routingKey, messageID: envelope.messageID, correlationID: envelope.correlationID,
                aggregateID: envelope.aggregateID, body: delivery.body)
            tap.seen.withLock { $0.append(seen) }
        }
        return tap
    }

    var events: [Seen] { seen.withLock { $0 } }

    func events(ofType type: String) -> [Seen] { events.filter { $0.type == type } }

    /// Waits until `count` events of `type` (about `aggregateID`, if given) have been seen.
    @discardableResult
    func wait(for type: String, aggregateID: String? = nil, count: Int = 1, within timeout: Duration = .seconds(15)) async throws -> [Seen] {
        let deadline = ContinuousClock.now + timeout
        func matching() -> [Seen] { events(ofType: type).filter { aggregateID == nil || $0.aggregateID == aggregateID } }
        while matching().count < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        return matching()
    }
}

/// Runs `body` against a fresh system and stops it afterwards, whatever happens.
func withSystem(
    _ services: [String] = System.allServices, environment: [String: String] = [:], backend: StorageBackend = .sqlite,
    _ body: (System) async throws -> Void
) async throws {
    let system = try await System.start(services, environment: environment, backend: backend)
    do {
        try await body(system)
    } catch {
        await system.stop()
        throw error
    }
    await system.stop()
}

func newUser(_ system: System, email: String? = nil, correlationID: String? = nil) async throws -> String {
    let reply = try await system.call(
        "users.create",
        ["name": "Ada Lovelace", "email": email ?? "ada-\(UUID().uuidString.prefix(8))@example.com", "password": "correct horse battery"],
        correlationID: correlationID)
    #expect(!reply.isError, "users.create failed: \(reply.json)")
    return try #require(reply.string("id"))
}
