import Foundation
import GRDBSQLite
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenTestSupport

/// Holds the write lock of a SQLite file, as a long transaction of another process would.
final class WriteLock {
    private var handle: OpaquePointer?

    init(path: String) throws {
        guard sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE, nil) == SQLITE_OK else { throw POSIXError(.EIO) }
        sqlite3_busy_timeout(handle, 10_000)
        guard sqlite3_exec(handle, "BEGIN IMMEDIATE", nil, nil, nil) == SQLITE_OK else { throw POSIXError(.EBUSY) }
    }

    func release() {
        sqlite3_exec(handle, "COMMIT", nil, nil, nil)
        sqlite3_close(handle)
        handle = nil
    }

    deinit { if handle != nil { release() } }
}

/// A count shared by concurrent tasks.
final class Tally: Sendable {
    private let value = Mutex(0)
    func add() { value.withLock { $0 += 1 } }
    var count: Int { value.withLock { $0 } }
}

@Suite("A command's effect happens once, across real service processes", .serialized, .timeLimit(.minutes(3)))
struct OrderOnceTests {
    /// The case: the order service's connection drops after it committed the order but
    /// before its ack reached the broker, so the broker redelivers the request. The order is
    /// held at its commit (the test holds the database's write lock), the link is blackholed,
    /// the commit goes through and its reply and ack are lost, then the link is cut.
    @Test("connection lost between commit and ack: the redelivered orders.create is answered from the inbox; one order, one charge")
    func redeliveryAfterCommit() async throws {
        let proxy = try TCPProxy()
        defer { proxy.stop() }
        try await withSystem(["user-service", "payment-service"]) { system in
            let orders = try await system.launch("order-service", environment: ["AMQP_URL": proxy.url(through: system.vhost.url)])
            let userID = try await newUser(system)
            let body = try JSONSerialization.data(withJSONObject: [
                "userId": userID, "items": [["sku": "book", "quantity": 1, "unitPriceCents": 1_500]],
            ])

            let lock = try WriteLock(path: system.data.url.appendingPathComponent("orders.sqlite").path)
            let call = Task { try await system.rpc.call("orders.create", body: body, timeout: .seconds(30)) }
            // Taken by the order service, which checks the user and then waits for the lock.
            let taken = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < taken, try await system.channel.inspectQueue("orders.rpc").messageCount > 0 {
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Task.sleep(for: .seconds(1))
            proxy.blackhole()
            lock.release()
            try await Task.sleep(for: .seconds(1))  // the commit; its reply and ack go nowhere
            proxy.cut()
            proxy.restore()

            let reply = try await call.value
            #expect(!reply.isError, "\(String(decoding: reply.body, as: UTF8.self))")
            let order = try JSONSerialization.jsonObject(with: reply.body) as? [String: Any] ?? [:]
            let orderID = try #require(order["id"] as? String)
            #expect(orders.log.contains("command already executed"), "the reply came from the inbox, after the redelivery")

            let list = try await system.call("orders.list", ["userId": userID])
            #expect(list.objects("orders").map { $0["id"] as? String } == [orderID])
            let paid = try await system.eventually("payments.get", ["orderId": orderID]) { !$0.isError }
            #expect(paid.string("status") == "succeeded")
            try await system.tap.wait(for: "payment.succeeded", aggregateID: orderID)
            try await Task.sleep(for: .milliseconds(500))
            #expect(system.tap.events(ofType: "order.created").count == 1)
            #expect(system.tap.events(ofType: "payment.succeeded").count == 1)
        }
    }

    /// The measurement, as a test: 8 clients place orders while the order service's link
    /// to the broker is cut 7 times. A client whose call fails with `timeout` (outcome unknown)
    /// retries with the same message id, as the contract says; every order must exist once, and
    /// be charged once.
    @Test("8 clients, 7 forced connection drops: every order placed once and charged once")
    func dropsUnderLoad() async throws {
        let proxy = try TCPProxy()
        defer { proxy.stop() }
        try await withSystem(["user-service", "payment-service"]) { system in
            let orders = try await system.launch("order-service", environment: ["AMQP_URL": proxy.url(through: system.vhost.url)])
            let userID = try await newUser(system)
            let body = try JSONSerialization.data(withJSONObject: [
                "userId": userID, "items": [["sku": "book", "quantity": 1, "unitPriceCents": 700]],
            ])
            let retries = Tally()
            let cuts = Tally()
            let cutter = Task {
                for _ in 0..<7 {
                    try await Task.sleep(for: .milliseconds(500))
                    proxy.cut()
                    cuts.add()
                    // Back in service before the next cut.
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
            let placed = try await withThrowingTaskGroup(of: [String].self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        var ids: [String] = []
                        // Orders one after another until the last cut, then one more.
                        var last = false
                        while !last {
                            last = cuts.count == 7
                            let envelope = Envelope(messageID: UUID().uuidString.lowercased())
                            for _ in 0..<60 {
                                do {
                                    let reply = try await system.rpc.call("orders.create", body: body, timeout: .seconds(5), envelope: envelope)
                                    let order = try JSONSerialization.jsonObject(with: reply.body) as? [String: Any]
                                    if !reply.isError, let id = order?["id"] as? String {
                                        ids.append(id)
                                        break
                                    }
                                    // An error reply (the user service unreachable from a cut link): not placed; retried.
                                } catch let error as ServiceError where error.code == .timeout || error.code == .unavailable {
                                    // Outcome unknown (or not executed): the same message id again.
                                    retries.add()
                                }
                                try await Task.sleep(for: .milliseconds(100))
                            }
                        }
                        return ids
                    }
                }
                var all: [String] = []
                for try await ids in group { all += ids }
                return all
            }
            try await cutter.value
            // Redeliveries answered from the inbox (the case) or calls retried after a timeout.
            let deduplicated = orders.log.components(separatedBy: "command already executed").count - 1
            #expect(retries.count + deduplicated > 0, "the drops hit requests in flight")
            #expect(placed.count >= 8, "every client placed orders (\(retries.count) retries, \(deduplicated) answered from the inbox)")
            #expect(Set(placed).count == placed.count)
            var stored: [String] = []
            var cursor: String?
            repeat {
                var request: [String: Any] = ["userId": userID, "limit": 100]
                if let cursor { request["cursor"] = cursor }
                let page = try await system.call("orders.list", request)
                stored += page.objects("orders").compactMap { $0["id"] as? String }
                cursor = page.string("next")
            } while cursor != nil
            #expect(stored.count == placed.count, "one order per message id, whatever the drops")
            #expect(Set(stored) == Set(placed))
            try await system.tap.wait(for: "payment.succeeded", count: placed.count, within: .seconds(30))
            try await Task.sleep(for: .seconds(1))
            #expect(Set(system.tap.events(ofType: "payment.succeeded").compactMap(\.aggregateID)) == Set(placed))
            #expect(Set(system.tap.events(ofType: "order.created").compactMap(\.aggregateID)).count == placed.count)
        }
    }

    @Test("the user service is stopped (its queue still there): orders.create is unavailable — certainly not placed — not a timeout")
    func userServiceStopped() async throws {
        try await withSystem(["user-service", "order-service"]) { system in
            await system.process("user-service")?.stop()
            let userID = UUID().uuidString.lowercased()
            let started = ContinuousClock.now
            let reply = try await system.call("orders.create", ["userId": userID, "items": [["sku": "pen", "quantity": 1, "unitPriceCents": 100]]])
            #expect(reply.errorCode == "unavailable", "\(reply.json)")
            #expect(reply.errorMessage.contains("no order was placed"))
            #expect(ContinuousClock.now - started < .seconds(3))
        }
    }
}
