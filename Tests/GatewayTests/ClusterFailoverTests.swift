import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// A real three-node RabbitMQ cluster on this machine (`scripts/cluster.sh`), with the user,
/// order and payment services and the gateway as processes whose `AMQP_URL` lists the three
/// nodes. Under a steady stream of `POST /orders`, the node each process is connected to is
/// stopped (one at a time, restarted in between: a quorum needs two of three): no accepted order
/// is lost, none is charged twice, orders succeed again within 5 s, the node rejoins and no
/// queue is left holding anything.
@Suite("Cluster failover", .serialized, .timeLimit(.minutes(15)))
struct ClusterFailoverTests {
    @Test("stopping the node under each service: 0 accepted orders lost, 0 charged twice, first success ≤ 5 s after the stop")
    func nodeStops() async throws {
        let cluster = try Cluster.start()
        do {
            // GatewayProcess wants a vhost on the main broker; every process here uses the cluster.
            try await withVhost("cluster-gateway") { vhost in try await run(cluster: cluster, vhost: vhost) }
        } catch {
            cluster.stop()
            throw error
        }
        cluster.stop()
    }

    private func run(cluster: Cluster, vhost: TestVhost) async throws {
        let data = try TemporaryDirectory()
        defer { data.remove() }
        let environment = ["AMQP_URL": cluster.url, "DATA_DIR": data.path, "BCRYPT_COST": "4", "LOG_LEVEL": "info"]
        let services = try ["user-service", "order-service", "payment-service"].map { try ServiceProcess($0, environment: environment) }
        let gateway = try GatewayProcess(vhost: vhost, environment: ["AMQP_URL": cluster.url, "LOG_LEVEL": "info"])
        let tap = try await EventCounter.start(url: cluster.url)
        do {
            for service in services { try await service.waitUntilReady(within: .seconds(60)) }
            try await gateway.waitUntilReady()
            try await exercise(cluster: cluster, gateway: gateway, tap: tap)
            // How each process lived through the stops (for the report, and a failure's cause).
            for process in services + [gateway.process] {
                let lines = process.logLines.filter { line in
                    let message = line["msg"] as? String ?? ""
                    return message.contains("broker") || message.contains("reconnect") || message.contains("restart")
                }
                for line in lines.suffix(40) {
                    print("cluster failover: \(process.executable) \(line["ts"] ?? "") \(line["msg"] ?? "") \(line["node"] ?? "") \(line["error"] ?? "")")
                }
            }
        } catch {
            Issue.record("failed: \(error)\ngateway log:\n\(gateway.process.log.suffix(3000))")
        }
        await tap.close()
        await gateway.stop()
        for service in services { await service.stop() }
    }

    private func exercise(cluster: Cluster, gateway: GatewayProcess, tap: EventCounter) async throws {
        let email = "cluster-\(UUID().uuidString.prefix(8))@example.com"
        let created = try await gateway.request("POST", "/users", json: ["name": "Ada", "email": email, "password": "correct horse battery"])
        #expect(created.status == 201, "\(created.text)")
        let login = try await gateway.request("POST", "/auth/token", json: ["email": email, "password": "correct horse battery"])
        let token = try #require(login.json["access_token"] as? String, "\(login.text)")

        let load = OrderLoad()
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 { group.addTask { await load.client(gateway: gateway, token: token) } }
            }
        }
        try await Task.sleep(for: .seconds(3))
        #expect(load.accepted > 0, "no order accepted before any node stopped")

        // Each node that holds a connection of a Warren process, one at a time.
        var stopped: Set<Int> = []
        var recoveries: [Duration] = []
        for _ in 0..<3 {
            guard let node = cluster.nodeServing(["users@", "orders@", "payments@", "api-gateway@"], except: stopped) else { break }
            stopped.insert(node)
            print("cluster failover: stopping node \(node) at \(Date())")
            // A planned stop: drained first (its quorum queue leaders move to the other nodes),
            // as `rabbitmq-upgrade drain` is meant for. Undrained, the queues led there wait for
            // an election after the stop (up to 7.6 s measured on this loaded machine).
            try cluster.run("stop-node", "\(node)", "--drain")
            print("cluster failover: node \(node) stopped at \(Date())")
            let stoppedAt = ContinuousClock.now
            let first = try await load.firstSuccess(after: stoppedAt, within: .seconds(30))
            recoveries.append(first - stoppedAt)
            #expect(first - stoppedAt <= .seconds(5), "node \(node): first accepted order \(first - stoppedAt) after the stop")
            try await Task.sleep(for: .seconds(2))
            try cluster.run("start-node", "\(node)")
            #expect(cluster.runningNodes().count == 3, "node \(node) did not rejoin: \(cluster.runningNodes())")
            try await Task.sleep(for: .seconds(2))
        }
        load.stop()
        await clients.value
        print("cluster failover: nodes stopped \(stopped.sorted()), first success after each stop \(recoveries), orders accepted \(load.accepted), attempts \(load.attempts), retried \(load.retries)")
        #expect(!stopped.isEmpty)

        // Every accepted order reaches its final state, charged once, with its events.
        let orders = load.orders
        var unfinished: [String] = []
        for id in orders {
            let deadline = ContinuousClock.now + .seconds(60)
            var status = ""
            while ContinuousClock.now < deadline {
                let order = try? await gateway.request("GET", "/orders/\(id)", token: token)
                status = order?.json["status"] as? String ?? ""
                if status == "confirmed" || status == "cancelled" { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            if status != "confirmed" { unfinished.append("\(id): \(status)") }
        }
        #expect(unfinished.isEmpty, "accepted orders not confirmed: \(unfinished.prefix(10)) of \(unfinished.count)")
        try await tap.waitFor(orders: Set(orders), within: .seconds(60))
        let (missing, doubleCharged) = tap.check(orders: Set(orders))
        #expect(missing.isEmpty, "orders without their events: \(missing.prefix(10))")
        #expect(doubleCharged.isEmpty, "orders charged more than once: \(doubleCharged.prefix(10))")
        print("cluster failover: \(orders.count) orders confirmed, events complete for \(orders.count - missing.count), charged twice \(doubleCharged.count)")

        // Nothing left in any queue (the services drain theirs; the tap is consumed).
        var leftover: [String] = []
        let deadline = ContinuousClock.now + .seconds(30)
        repeat {
            leftover = cluster.nonEmptyQueues()
            if leftover.isEmpty { break }
            try await Task.sleep(for: .milliseconds(500))
        } while ContinuousClock.now < deadline
        #expect(leftover.isEmpty, "queues still holding messages: \(leftover)")
        for queue in leftover.compactMap({ $0.split(separator: " ").first.map(String.init) }) where queue.hasSuffix(".dlq") {
            print("cluster failover: in \(queue): \(await tap.peek(queue))")
        }
    }
}

/// `scripts/cluster.sh` in a directory of the test's own.
struct Cluster: Sendable {
    let directory: String
    let url: String

    static let script = GatewayProcess.repository.appendingPathComponent("scripts/cluster.sh").path

    static func start() throws -> Cluster {
        // One fixed directory: a run killed before its clean-up (a time-out) is stopped by the next.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("warren-cluster-test").path
        var cluster = Cluster(directory: directory, url: "")
        cluster.stop()
        do {
            _ = try cluster.run("start")
            cluster = Cluster(directory: directory, url: try cluster.run("url").trimmingCharacters(in: .whitespacesAndNewlines))
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    /// Runs the script; throws with its output when it fails.
    @discardableResult
    func run(_ arguments: String...) throws -> String {
        try run(arguments)
    }

    func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.script)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["CLUSTER_DIR"] = directory
        process.environment = environment
        // A file, never a pipe: the nodes the script starts outlive it.
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString.prefix(8)).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try? handle.close()
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        guard process.terminationStatus == 0 else {
            throw ClusterFailure(message: "cluster.sh \(arguments.joined(separator: " ")) exited \(process.terminationStatus): \(text.suffix(2000))")
        }
        return text
    }

    func stop() {
        _ = try? run("stop")
    }

    /// The first node (1...3, not in `except`) holding a connection whose name contains one of `names`.
    func nodeServing(_ names: [String], except: Set<Int>) -> Int? {
        for node in 1...3 where !except.contains(node) {
            guard let listing = try? run("ctl", "\(node)", "-q", "list_connections", "client_properties") else { continue }
            if names.contains(where: { listing.contains($0) }) { return node }
        }
        return nil
    }

    func runningNodes() -> [String] {
        guard let status = try? run("ctl", "1", "-q", "cluster_status", "--formatter", "json"),
            let json = try? JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any]
        else { return [] }
        return json["running_nodes"] as? [String] ?? []
    }

    /// `name (n messages)` for every queue of the cluster that holds any, ready or unacked.
    func nonEmptyQueues() -> [String] {
        guard let listing = try? run("ctl", "1", "-q", "list_queues", "name", "messages", "--no-table-headers") else { return ["(list_queues failed)"] }
        return listing.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: "\t")
            guard parts.count == 2, let count = Int(parts[1].trimmingCharacters(in: .whitespaces)), count > 0 else { return nil }
            return "\(parts[0]) (\(count))"
        }
    }
}

struct ClusterFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Clients posting orders with an `Idempotency-Key`, each retrying the same key and body until
/// the order is accepted (a 503 is certainly not executed, a 504 may have been: the key makes
/// the retry safe).
final class OrderLoad: Sendable {
    private struct State {
        var orders: [String] = []
        var successes: [ContinuousClock.Instant] = []
        var attempts = 0
        var retries = 0
        var stopped = false
    }

    private let state = Mutex(State())

    var accepted: Int { state.withLock { $0.orders.count } }
    var attempts: Int { state.withLock { $0.attempts } }
    var retries: Int { state.withLock { $0.retries } }
    var orders: [String] { state.withLock { $0.orders } }
    func stop() { state.withLock { $0.stopped = true } }

    func client(gateway: GatewayProcess, token: String) async {
        while !state.withLock({ $0.stopped }) {
            let key = UUID().uuidString
            let body: [String: Any] = ["items": [["sku": "book", "quantity": 1, "unitPriceCents": 1500]]]
            // Until accepted, even past the stop: a key once sent may have created an order.
            let deadline = ContinuousClock.now + .seconds(90)
            while ContinuousClock.now < deadline {
                state.withLock { $0.attempts += 1 }
                let result = try? await gateway.request("POST", "/orders", json: body, token: token, headers: ["Idempotency-Key": key])
                if let result, result.status == 201, let id = result.json["id"] as? String {
                    state.withLock {
                        $0.orders.append(id)
                        $0.successes.append(.now)
                    }
                    break
                }
                state.withLock { $0.retries += 1 }
                try? await Task.sleep(for: .milliseconds(100))
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// When the first order was accepted after `instant`.
    func firstSuccess(after instant: ContinuousClock.Instant, within timeout: Duration) async throws -> ContinuousClock.Instant {
        let deadline = instant + timeout
        while ContinuousClock.now < deadline {
            if let first = state.withLock({ $0.successes.first { $0 > instant } }) { return first }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ClusterFailure(message: "no order accepted within \(timeout) of a node stop")
    }
}

/// Every event on `warren.events` of the cluster, through a quorum queue of the test's own
/// (so that it survives the node stops), acked once recorded.
final class EventCounter: Sendable {
    private struct Seen {
        var created: Set<String> = []
        var confirmed: Set<String> = []
        /// Order id → the payment ids its payment events carried.
        var payments: [String: Set<String>] = [:]
    }

    private let connection: AMQPConnection
    private let seen = Mutex(Seen())
    static let queue = "cluster-test.tap"

    private init(connection: AMQPConnection) { self.connection = connection }

    static func start(url: String) async throws -> EventCounter {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "cluster-test-tap"
        let connection = try await AMQPConnection.connect(configuration)
        let counter = EventCounter(connection: connection)
        let channel = try await connection.openChannel()
        try await channel.declareExchange(EventPublisher.exchange, type: "topic", durable: true)
        _ = try await channel.declareQueue(queue, arguments: DurableQueueType.quorum.arguments(consumed: false, deadLettering: false))
        try await channel.bindQueue(queue, exchange: EventPublisher.exchange, routingKey: "#")
        try await channel.setPrefetch(256)
        _ = try await channel.consume(queue: queue) { event in
            guard case .delivery(let delivery) = event else { return }
            counter.record(delivery)
            try? delivery.ack()
        }
        return counter
    }

    private func record(_ delivery: AMQPDelivery) {
        let body = (try? JSONSerialization.jsonObject(with: delivery.body) as? [String: Any]) ?? [:]
        seen.withLock { seen in
            switch delivery.routingKey {
            case "order.created": (body["id"] as? String).map { _ = seen.created.insert($0) }
            case "order.confirmed": (body["id"] as? String).map { _ = seen.confirmed.insert($0) }
            case "payment.succeeded", "payment.failed":
                if let order = body["orderId"] as? String, let payment = body["id"] as? String { seen.payments[order, default: []].insert(payment) }
            default: break
            }
        }
    }

    func waitFor(orders: Set<String>, within timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while check(orders: orders).missing.count > 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
    }

    /// Orders missing one of order.created, a payment event, order.confirmed; orders with more than one payment id.
    func check(orders: Set<String>) -> (missing: [String], doubleCharged: [String]) {
        seen.withLock { seen in
            let missing = orders.filter { !seen.created.contains($0) || seen.payments[$0] == nil || !seen.confirmed.contains($0) }
            let double = orders.filter { (seen.payments[$0]?.count ?? 0) > 1 }
            return (missing.sorted(), double.sorted())
        }
    }

    /// What a few messages of `queue` say about why they are there (for a failure's message).
    func peek(_ queue: String) async -> [String] {
        guard let channel = try? await connection.openChannel() else { return [] }
        var seen: [String] = []
        for _ in 0..<5 {
            guard let delivery = try? await channel.get(queue: queue) else { break }
            let headers = delivery.properties.headers ?? [:]
            seen.append("type \(delivery.properties.type ?? "-") redelivered \(delivery.redelivered) x-error \(headers[WireHeader.error].map { "\($0)" } ?? "-") x-death \(headers["x-death"].map { "\($0)" } ?? "-")")
        }
        await channel.close()
        return seen
    }

    func close() async {
        if let channel = try? await connection.openChannel() { _ = try? await channel.deleteQueue(Self.queue) }
        await connection.close()
    }
}
