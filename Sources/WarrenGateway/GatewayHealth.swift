import Foundation
import Synchronization
import WarrenAMQP

/// `/health`: the broker connection, and for each service the routes call, whether anyone
/// consumes its queue (a passive declare: it creates nothing and reads the consumer count).
final class GatewayHealth: Sendable {
    private let connection: AMQPConnection
    private let services: [String]
    private let channel = Mutex<AMQPChannel?>(nil)

    init(connection: AMQPConnection, services: [String]) {
        self.connection = connection
        self.services = services
    }

    /// The status (200 when everything is up, else 503) and the JSON body saying what is down.
    func check(timeout: Duration = .seconds(2)) async -> (ok: Bool, body: Data) {
        let connected = connection.isConnected
        var entries: [String: [String: Any]] = [:]
        var ok = connected
        for service in services {
            let queue = "\(service).rpc"
            var entry: [String: Any]
            if !connected {
                entry = ["status": "down", "detail": "the gateway is not connected to the broker"]
            } else {
                entry = await inspect(queue, timeout: timeout)
            }
            if entry["status"] as? String != "ok" { ok = false }
            entries[service] = entry
        }
        let object: [String: Any] = [
            "status": ok ? "ok" : "degraded", "broker": connected ? "connected" : "disconnected", "services": entries,
        ]
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return (ok, body)
    }

    private func inspect(_ queue: String, timeout: Duration) async -> [String: Any] {
        do {
            let channel = try await self.openedChannel()
            let info = try await withThrowingTaskGroup(of: AMQPQueueInfo?.self) { group in
                group.addTask { try await channel.inspectQueue(queue) }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            guard let info else { return ["status": "down", "detail": "the broker did not answer about \(queue) in time"] }
            if info.consumerCount == 0 {
                return ["status": "down", "consumers": 0, "detail": "nobody consumes \(queue): start the service"]
            }
            return ["status": "ok", "consumers": Int(info.consumerCount)]
        } catch let AMQPError.channelClosed(code, _) where code == 404 {
            return ["status": "down", "detail": "\(queue) does not exist: the service has never started on this broker"]
        } catch {
            return ["status": "down", "detail": "could not inspect \(queue): \(error)"]
        }
    }

    private func openedChannel() async throws -> AMQPChannel {
        if let channel = channel.withLock({ $0 }) { return channel }
        let opened = try await connection.openChannel()
        return channel.withLock { existing in
            if let existing { return existing }
            existing = opened
            return opened
        }
    }
}
