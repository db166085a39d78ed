import Foundation
import Testing
import WarrenAMQP

/// The broker the tests run against: `AMQP_URL`, or the local default that `make test` starts.
enum Broker {
    static let url = ProcessInfo.processInfo.environment["AMQP_URL"] ?? "amqp://guest:guest@localhost:5672/"

    static func configuration(name: String = #function) throws -> AMQPConfiguration {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = "test-\(name)-\(UUID().uuidString.prefix(8))"
        return configuration
    }

    static func connect(name: String = #function) async throws -> AMQPConnection {
        try await AMQPConnection.connect(configuration(name: name))
    }

    /// A name no other test uses, so tests can run in parallel.
    static func unique(_ prefix: String) -> String {
        "test.\(prefix).\(UUID().uuidString.prefix(12).lowercased())"
    }
}

/// Opens a connection and channel, runs `body`, then deletes what `cleanup` names and closes.
func withChannel<T>(
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
    func first(_ count: Int, within timeout: Duration = .seconds(10)) async throws -> [AMQPDelivery] where Self: Sendable {
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
