import Foundation
import Synchronization
import WarrenAMQP
import WarrenContract

/// `/health`: the broker connection, and for each service the routes call, whether anyone
/// consumes its queue (a passive declare: it creates nothing and reads the consumer count).
///
/// It answers within `budget` whatever the broker does. The passive declares run on the
/// connection's I/O thread, which a stalled broker (a memory alarm blocks the connection; a
/// dead link) can hold for the whole operation timeout: a check took 25 s that way and still
/// called services ok. So the declares run in one shared task that requests join rather
/// than repeat, and a request that has waited `budget` answers 503 with what it does not know.
/// While the broker blocks the connection (`connection.blocked`), nothing is asked of it.
final class GatewayHealth: Sendable {
    private let connection: AMQPConnection
    private let services: [String]
    private let channel = Mutex<AMQPChannel?>(nil)
    /// The inspection under way, joined by every request that comes while it runs.
    private let inFlight = Mutex<Task<[String: Entry], Never>?>(nil)

    /// One service's line in the body.
    struct Entry: Sendable, Equatable {
        var ok: Bool
        var consumers: Int?
        var detail: String?

        var json: [String: Any] {
            var object: [String: Any] = ["status": ok ? "ok" : "down"]
            if let consumers { object["consumers"] = consumers }
            if let detail { object["detail"] = detail }
            return object
        }
    }

    init(connection: AMQPConnection, services: [String]) {
        self.connection = connection
        self.services = services
    }

    /// The status (200 when everything is up, else 503) and the JSON body saying what is down.
    func check(budget: Duration = .milliseconds(800)) async -> (ok: Bool, body: Data) {
        let connected = connection.isConnected
        let blocked = connected && connection.isBlocked
        var entries: [String: Entry] = [:]
        if !connected {
            for service in services { entries[service] = Entry(ok: false, detail: "the gateway is not connected to the broker") }
        } else if blocked {
            for service in services {
                entries[service] = Entry(
                    ok: false, detail: "the broker blocks this connection (a memory or disk alarm): requests to \(service) cannot be sent")
            }
        } else if let inspected = await Self.value(of: inspection(), within: budget) {
            entries = inspected
        } else {
            for service in services {
                entries[service] = Entry(ok: false, detail: "the broker did not answer about \(QueueName.rpc(service)) within \(budget)")
            }
        }
        let ok = connected && !blocked && services.allSatisfy { entries[$0]?.ok == true }
        let object: [String: Any] = [
            "status": ok ? "ok" : "degraded", "broker": connected ? (blocked ? "blocked" : "connected") : "disconnected",
            "services": entries.mapValues(\.json),
        ]
        let body = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return (ok, body)
    }

    /// The inspection under way, or a new one: every service at once.
    private func inspection() -> Task<[String: Entry], Never> {
        inFlight.withLock { current in
            if let current { return current }
            let task = Task { [self] in
                let entries = await withTaskGroup(of: (String, Entry).self) { group in
                    for service in services { group.addTask { (service, await self.inspect(QueueName.rpc(service).name)) } }
                    var entries: [String: Entry] = [:]
                    for await (service, entry) in group { entries[service] = entry }
                    return entries
                }
                inFlight.withLock { $0 = nil }
                return entries
            }
            current = task
            return task
        }
    }

    private func inspect(_ queue: String) async -> Entry {
        do {
            let info = try await openedChannel().inspectQueue(queue)
            if info.consumerCount == 0 {
                return Entry(ok: false, consumers: 0, detail: "nobody consumes \(queue): start the service")
            }
            return Entry(ok: true, consumers: Int(info.consumerCount))
        } catch let AMQPError.channelClosed(code, _) where code == 404 {
            return Entry(ok: false, detail: "\(queue) does not exist: the service has never started on this broker")
        } catch {
            return Entry(ok: false, detail: "could not inspect \(queue): \(error)")
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

    /// `task`'s value if it comes within `limit`, else nil; the task itself runs on either way
    /// (a task group would wait for it, which is what must not happen here).
    static func value<T: Sendable>(of task: Task<T, Never>, within limit: Duration) async -> T? {
        await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let answer = FirstAnswer(continuation)
            let timer = Task {
                try? await Task.sleep(for: limit)
                answer.resume(returning: nil)
            }
            Task {
                answer.resume(returning: await task.value)
                timer.cancel()  // no sleeping task left behind per request
            }
        }
    }
}

/// A continuation resumed by whichever answer comes first; later ones are dropped.
private final class FirstAnswer<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume(returning value: T) {
        continuation.withLock { $0.take() }?.resume(returning: value)
    }
}
