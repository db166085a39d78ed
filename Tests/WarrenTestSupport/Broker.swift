// Helpers shared by every test target: the broker under test, unique names, waiting.
import Foundation
import Synchronization
import Testing
public import WarrenAMQP

/// The broker the tests run against: `AMQP_URL`, or the local default that `make test` starts.
public enum Broker {
    public static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"

    public static func configuration(name: String = #function) throws -> AMQPConfiguration {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "test-\(name)-\(UUID().uuidString.prefix(8))"
        return configuration
    }

    public static func connect(name: String = #function) async throws -> AMQPConnection {
        try await AMQPConnection.connect(configuration(name: name))
    }

    /// A name no other test uses, so tests can run in parallel.
    public static func unique(_ prefix: String) -> String {
        "test.\(prefix).\(UUID().uuidString.prefix(12).lowercased())"
    }
}

/// Opens a connection and channel, runs `body`, then deletes what `cleanup` names and closes.
public func withChannel<T>(
    name: String = #function,
    queues: [String] = [],
    exchanges: [String] = [],
    _ body: (AMQPConnection, AMQPChannel) async throws -> T
) async throws -> T {
    let connection = try await Broker.connect(name: name)
    let channel = try await connection.openChannel()
    do {
        let result = try await body(connection, channel)
        await cleanup(connection, queues: queues, exchanges: exchanges)
        return result
    } catch {
        await cleanup(connection, queues: queues, exchanges: exchanges)
        throw error
    }
}

private func cleanup(_ connection: AMQPConnection, queues: [String], exchanges: [String]) async {
    if let channel = try? await connection.openChannel() {
        for queue in queues { _ = try? await channel.deleteQueue(queue) }
        for exchange in exchanges { try? await channel.deleteExchange(exchange) }
    }
    await connection.close()
}

extension AsyncSequence where Element == AMQPDelivery {
    /// The first `count` deliveries, or fewer if `timeout` passes first.
    public func first(_ count: Int, within timeout: Duration = .seconds(10)) async throws -> [AMQPDelivery] where Self: Sendable {
        try await withThrowingTaskGroup(of: [AMQPDelivery]?.self) { group in
            group.addTask {
                var received: [AMQPDelivery] = []
                for try await delivery in self {
                    received.append(delivery)
                    if received.count == count { break }
                }
                return received
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first ?? []
        }
    }
}

/// Acts on the broker the way an operator would, through `rabbitmqctl`.
public enum BrokerControl {
    /// Server-side close of every connection carrying this connection name (as
    /// `rabbitmqctl close_connection` does), then waits until the broker has dropped them.
    public static func closeConnections(named name: String) async throws {
        let pids = try connectionPIDs(named: name)
        #expect(!pids.isEmpty, "no broker connection named \(name)")
        for pid in pids {
            _ = try rabbitmqctl(["close_connection", pid, "closed by a Warren test"])
        }
    }

    public static func connectionCount(named name: String) -> Int {
        (try? connectionPIDs(named: name).count) ?? -1
    }

    private static func connectionPIDs(named name: String) throws -> [String] {
        let listing = try rabbitmqctl(["list_connections", "-s", "pid", "client_properties"])
        return listing.split(separator: "\n").compactMap { line in
            guard line.contains("\"\(name)\"") else { return nil }
            return line.split(separator: "\t").first.map(String.init)
        }
    }

    /// Runs `rabbitmqctl` with `arguments` and returns what it printed.
    public static func run(_ arguments: [String]) throws -> String {
        try rabbitmqctl(arguments)
    }

    private static func rabbitmqctl(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/rabbitmqctl")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

/// basic.get until a message shows up (dead-lettering is asynchronous).
public func pollGet(_ channel: AMQPChannel, queue: String, within timeout: Duration = .seconds(5)) async throws -> AMQPDelivery? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let delivery = try await channel.get(queue: queue) { return delivery }
        try await Task.sleep(for: .milliseconds(20))
    }
    return nil
}

public func waitUntil(within timeout: Duration = .seconds(5), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// The name of the thread running the caller, as the kernel has it (`warren-amqp-io` for a
/// connection's I/O thread).
public func currentThreadName() -> String {
    let name = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "unreadable"
    return name.trimmingCharacters(in: .newlines)
}

/// Set once by one task, read from any other.
public final class Flag: Sendable {
    private let value = Mutex(false)
    public init() {}
    public var isSet: Bool { value.withLock { $0 } }
    public func set() { value.withLock { $0 = true } }
}
