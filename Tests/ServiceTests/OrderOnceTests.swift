import Foundation
import GRDBSQLite
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
