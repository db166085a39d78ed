import Foundation
import GRDB
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP
import WarrenSQLite

struct Place: Codable, Sendable {
    var text: String
    var sleepMilliseconds: Int?
}

struct Placed: Codable, Sendable, Equatable {
    var id: String
    var text: String
}

/// A responder with one command, `<name>.place`, that stores a row and its reply in one
/// transaction in a SQLite file of its own, with the command inbox beside it.
final class PlacingService: Sendable {
    let name = "c\(UUID().uuidString.prefix(8).lowercased())"
    let connection: AMQPConnection
    let database: DatabaseQueue
    let inbox: SQLiteCommandInbox
    let file: URL
    let executions = Mutex(0)
    private let task: Mutex<Task<Void, any Error>?> = Mutex(nil)
    private let group: Mutex<ServiceGroup?> = Mutex(nil)

    init(connection: AMQPConnection) throws {
        self.connection = connection
        file = FileManager.default.temporaryDirectory.appendingPathComponent("warren-inbox-\(UUID().uuidString).sqlite")
        database = try DatabaseQueue(path: file.path)
        var migrator = DatabaseMigrator()
        SQLiteCommandInbox.registerMigration(&migrator)
        migrator.registerMigration("placed") { db in
            try db.create(table: "placed") { table in
                table.primaryKey("id", .text)
                table.column("text", .text).notNull()
            }
        }
        try migrator.migrate(database)
        inbox = SQLiteCommandInbox(database: database)
    }

    var rows: Int { (try? database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM placed") }) ?? -1 }

    func start(rpc: RPCClient? = nil) async throws {
        var handlers = RPCHandlers()
        // A command that calls `place` and then fails before recording anything of its own, as
        // if it crashed after the call: run again, it must not place twice.
        handlers.onCommand("\(name).relay", Place.self) { [name] request, context -> Placed in
            _ = try await context.call("\(name).place", request, as: Placed.self)
            throw ServiceError.unavailable("crashed after placing, on purpose")
        }
        handlers.onCommand("\(name).place", Place.self) { [self] request, context in
            executions.withLock { $0 += 1 }
            if let sleep = request.sleepMilliseconds { try await Task.sleep(for: .milliseconds(sleep)) }
            let placed = Placed(id: UUID().uuidString.lowercased(), text: request.text)
            try await database.write { db in
                try SQLiteCommandInbox.record(context.command, reply: placed, in: db)
                try db.execute(sql: "INSERT INTO placed (id, text) VALUES (?, ?)", arguments: [placed.id, placed.text])
            }
            return placed
        }
        let responder = RPCResponder(service: name, connection: connection, handlers: handlers, rpc: rpc, inbox: inbox)
        let group = ServiceGroup(services: [responder], gracefulShutdownSignals: [], logger: Logger(label: "test"))
        self.group.withLock { $0 = group }
        task.withLock { $0 = Task { try await group.run() } }
        let channel = try await connection.openChannel()
        for _ in 0..<200 {
            if let info = try? await channel.inspectQueue("\(name).rpc"), info.consumerCount > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        await channel.close()
    }

    func cleanUp() async {
        await group.withLock { $0 }?.triggerGracefulShutdown()
        _ = try? await task.withLock { $0 }?.value
        if let channel = try? await connection.openChannel() {
            _ = try? await channel.deleteQueue("\(name).rpc")
            _ = try? await channel.deleteQueue("\(name).rpc.dlq")
        }
        try? FileManager.default.removeItem(at: file)
    }
}

/// A plain AMQP client: publishes exactly the properties given; replies arrive in order.
final class RawCaller: Sendable {
    let channel: AMQPChannel
    private let received = Mutex<[AMQPDelivery]>([])

    private init(channel: AMQPChannel) { self.channel = channel }

    static func start(_ connection: AMQPConnection) async throws -> RawCaller {
        let caller = RawCaller(channel: try await connection.openChannel())
        _ = try await caller.channel.consume(queue: "amq.rabbitmq.reply-to", noAck: true) { [caller] event in
            if case .delivery(let delivery) = event { caller.received.withLock { $0.append(delivery) } }
        }
        return caller
    }

    func send(_ body: String, to queue: String, type: String, messageID: String?, headers: AMQPTable? = nil) async throws {
        try await channel.publish(
            Data(body.utf8), routingKey: queue,
            properties: AMQPProperties(
                contentType: "application/json", headers: headers, correlationID: UUID().uuidString, replyTo: "amq.rabbitmq.reply-to",
                messageID: messageID, type: type))
    }

    /// The next reply, as (x-status, body), or nil after 10 s.
    func next() async throws -> (String?, Data)? {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if let reply = received.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                return (reply.properties.headers?["x-status"]?.stringValue, reply.body)
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }
}

func withPlacing(name: String = #function, _ body: (PlacingService, RPCClient, AMQPConnection) async throws -> Void) async throws {
    let connection = try await Broker.connect(name: name)
    let service = try PlacingService(connection: connection)
    let client = try await RPCClient.start(connection: connection)
    // Keeps the calls' deadlines for this scope (cancelled at its end).
    async let _ = client.run()
    try await service.start(rpc: client)
    let result: Result<Void, any Error>
    do {
        result = .success(try await body(service, client, connection))
    } catch {
        result = .failure(error)
    }
    await client.close()
    await service.cleanUp()
    await connection.close()
    try result.get()
}

@Suite("Command inbox: a command's effect happens once", .timeLimit(.minutes(2)))
struct CommandInboxTests {
    @Test("a command sent again with the same message_id is answered with the first reply, not executed again")
    func redeliveryAnsweredFromInbox() async throws {
        try await withPlacing { service, client, _ in
            let envelope = Envelope(messageID: "cmd-\(UUID().uuidString)")
            let first = try await client.call("\(service.name).place", Place(text: "one"), as: Placed.self, envelope: envelope)
            let second = try await client.call("\(service.name).place", Place(text: "one"), as: Placed.self, envelope: envelope)
            #expect(second == first)
            #expect(service.rows == 1)
            #expect(service.executions.withLock { $0 } == 1)
            // A new id is a new command.
            let third = try await client.call("\(service.name).place", Place(text: "one"), as: Placed.self)
            #expect(third.id != first.id)
            #expect(service.rows == 2)
        }
    }

    @Test("a message_id reused with a different body or operation is conflict, and nothing is executed")
    func reusedIDConflicts() async throws {
        try await withPlacing { service, client, _ in
            let envelope = Envelope(messageID: "cmd-\(UUID().uuidString)")
            _ = try await client.call("\(service.name).place", Place(text: "one"), as: Placed.self, envelope: envelope)
            await #expect {
                _ = try await client.call("\(service.name).place", Place(text: "two"), as: Placed.self, envelope: envelope)
            } throws: { error in
                (error as? ServiceError)?.code == .conflict && (error as? ServiceError)?.message.contains("already used") == true
            }
            #expect(service.rows == 1)
            #expect(service.executions.withLock { $0 } == 1)
        }
    }

    @Test("two deliveries of one command at once: one effect, and both answered with its reply")
    func concurrentDuplicates() async throws {
        try await withPlacing { service, client, _ in
            let envelope = Envelope(messageID: "cmd-\(UUID().uuidString)")
            async let first = client.call("\(service.name).place", Place(text: "race", sleepMilliseconds: 300), as: Placed.self, envelope: envelope)
            async let second = client.call("\(service.name).place", Place(text: "race", sleepMilliseconds: 300), as: Placed.self, envelope: envelope)
            let (a, b) = try await (first, second)
            #expect(a == b)
            #expect(service.rows == 1)
            #expect(service.executions.withLock { $0 } == 2, "both ran; the second's transaction rolled back")
        }
    }

    @Test("a command run again calls the commands it called with the same message_id: the inner effect happens once")
    func nestedCommandOnce() async throws {
        try await withPlacing { service, client, _ in
            let envelope = Envelope(messageID: "outer-\(UUID().uuidString)")
            for _ in 0..<2 {
                await #expect(throws: ServiceError.self) {
                    _ = try await client.call("\(service.name).relay", Place(text: "inner"), as: Placed.self, envelope: envelope)
                }
            }
            #expect(service.rows == 1)
            #expect(service.executions.withLock { $0 } == 1)
        }
    }

    @Test("replies older than the retention are pruned; newer ones stay")
    func pruning() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("warren-prune-\(UUID().uuidString).sqlite")
        defer { try? FileManager.default.removeItem(at: file) }
        let database = try DatabaseQueue(path: file.path)
        var migrator = DatabaseMigrator()
        SQLiteCommandInbox.registerMigration(&migrator)
        try migrator.migrate(database)
        let inbox = SQLiteCommandInbox(database: database, retention: 3_600)
        let command = Command(messageID: "old", operation: "a.b", body: Data("{}".utf8))
        try await database.write { db in try SQLiteCommandInbox.record(command, reply: ["ok": true], in: db) }
        #expect(try await inbox.prune() == 0)
        #expect(try await inbox.storedReply(for: "old")?.body == Data(#"{"ok":true}"#.utf8))
        #expect(try await inbox.prune(now: Date().addingTimeInterval(3_601)) == 1)
        #expect(try await inbox.storedReply(for: "old") == nil)
        // Recording the same command twice in one store is refused, so the caller's transaction rolls back.
        try await database.write { db in try SQLiteCommandInbox.record(command, reply: ["ok": true], in: db) }
        await #expect(throws: CommandAlreadyApplied.self) {
            try await database.write { db in try SQLiteCommandInbox.record(command, reply: ["ok": false], in: db) }
        }
    }

    @Test("derived message ids: fixed length, and different for any difference in key or scope")
    func derivedIDs() {
        let ids = [
            Command.derivedMessageID(idempotencyKey: "k", scope: ["ab", "c"]),
            Command.derivedMessageID(idempotencyKey: "k", scope: ["a", "bc"]),
            Command.derivedMessageID(idempotencyKey: "K", scope: ["ab", "c"]),
            Command.derivedMessageID(idempotencyKey: String(repeating: "k", count: 10_000), scope: ["", "", ""]),
            Command.derivedMessageID(idempotencyKey: "\u{0}", scope: []),
        ]
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.utf8.count == 69 && $0.hasPrefix("idem-") })
        #expect(Command.derivedMessageID(idempotencyKey: "k", scope: ["ab", "c"]) == ids[0])
        #expect(Command(messageID: "m", operation: "a.b", body: Data("{}".utf8)).fingerprint
            != Command(messageID: "m", operation: "a.c", body: Data("{}".utf8)).fingerprint)
    }

    @Test(
        "a retry that writes the same JSON differently is the same request; another value is not",
        arguments: [
            (#"{"b":[1,{"y":2,"x":1}],"a":"é"}"#, true),
            ("{ \"a\" : \"é\" ,\n \"b\" : [ 1 , { \"x\" : 1 , \"y\" : 2 } ] }", true),
            (#"{"a":"\u00e9","b":[1,{"x":1,"y":2}]}"#, true),
            (#"{"a":"é","b":[1,{"x":1,"y":3}]}"#, false),
            (#"{"a":"é","b":[{"x":1,"y":2},1]}"#, false),
            (#"{"a":"é","b":[1,{"x":1,"y":2}],"c":null}"#, false),
        ])
    func fingerprintOfJSON(body: String, same: Bool) {
        let original = Command(messageID: "m", operation: "users.create", body: Data(#"{"a":"é","b":[1,{"x":1,"y":2}]}"#.utf8))
        #expect((Command(messageID: "m", operation: "users.create", body: Data(body.utf8)).fingerprint == original.fingerprint) == same, "\(body)")
    }

    @Test("a redelivery past its deadline that already committed gets its stored reply, not 'timeout: not executed'")
    func committedCommandPastDeadline() async throws {
        try await withPlacing { service, _, connection in
            let caller = try await RawCaller.start(connection)
            let id = "cmd-\(UUID().uuidString)"
            try await caller.send(#"{"text":"late"}"#, to: "\(service.name).rpc", type: "\(service.name).place", messageID: id)
            let (status, body) = try #require(try await caller.next())
            #expect(status == "ok")
            let past = Int64(Date().addingTimeInterval(-5).timeIntervalSince1970 * 1000)
            try await caller.send(
                #"{"text":"late"}"#, to: "\(service.name).rpc", type: "\(service.name).place", messageID: id, headers: ["x-deadline": .int(past)])
            let (againStatus, againBody) = try #require(try await caller.next())
            #expect(againStatus == "ok")
            #expect(againBody == body)
            #expect(service.rows == 1)
        }
    }

    /// Hostile and odd message ids: each is either the inbox's key (the second send is answered
    /// from it) or, when there is none to key on, every send executes.
    @Test(
        "message ids of every shape: deduplicated when present, executed each time when absent or empty",
        arguments: [
            ("plain", "cmd-plain-\(UUID().uuidString)", 1),
            ("255 bytes", String(repeating: "x", count: 219) + UUID().uuidString, 1),
            ("unicode", "ünïcødé-✓-\(UUID().uuidString)", 1),
            // Stored through GRDB as a C string, it would be cut at the NUL: refused, never executed.
            ("NUL inside", "nul\u{0}byte-\(UUID().uuidString)", 0),
            ("spaces and quotes", "  \"quoted\" ' \(UUID().uuidString) ", 1),
            ("SQL", "'; DROP TABLE warren_command_inbox; -- \(UUID().uuidString)", 1),
            ("empty", "", 2),
            ("absent", nil, 2),
        ] as [(String, String?, Int)])
    func messageIDs(label: String, messageID: String?, rows: Int) async throws {
        try await withPlacing { service, _, connection in
            let caller = try await RawCaller.start(connection)
            for _ in 0..<2 {
                try await caller.send(#"{"text":"x"}"#, to: "\(service.name).rpc", type: "\(service.name).place", messageID: messageID)
                let (status, _) = try #require(try await caller.next(), "\(label): no reply")
                #expect(status == (rows == 0 ? "error" : "ok"), "\(label)")
            }
            #expect(service.rows == rows, "\(label)")
        }
    }
}

@Suite("Every request delivery ends acked, replied to or dead-lettered", .timeLimit(.minutes(2)))
struct RequestDeliveryEndsTests {
    @Test("70 invalid fire-and-forget commands whose headers nearly fill a frame all reach the dead-letter queue; serving goes on")
    func nearFrameInvalidCommands() async throws {
        try await withRPC { service, client, connection in
            let channel = try await connection.openChannel()
            // The largest header the client lets through: adding x-error makes the copy too big for a frame.
            var padding = 131_072
            while true {
                let properties = AMQPProperties(headers: ["pad": .string(String(repeating: "p", count: padding))], messageID: "big-00", type: "\(service.name).nope")
                do {
                    try await channel.publish(Data("{}".utf8), routingKey: "\(service.name).rpc.nowhere", properties: properties)
                    break
                } catch AMQPError.invalidArgument {
                    padding -= 16
                }
            }
            for index in 0..<70 {
                let type = index.isMultiple(of: 2) ? "\(service.name).nope" : nil  // unknown type, or none
                try await channel.publish(
                    Data("{}".utf8), routingKey: "\(service.name).rpc",
                    properties: AMQPProperties(
                        headers: ["pad": .string(String(repeating: "p", count: padding))], messageID: "big-\(index < 10 ? "0" : "")\(index)", type: type))
            }
            let reply = try await client.call("\(service.name).echo", Echo(text: "still serving"), as: Echo.self, timeout: .seconds(10))
            #expect(reply.text == "still serving")
            var parked: UInt32 = 0
            let deadline = ContinuousClock.now + .seconds(10)
            while parked < 70, ContinuousClock.now < deadline {
                parked = try await channel.inspectQueue("\(service.name).rpc.dlq").messageCount
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(parked == 70)
            #expect(try await channel.inspectQueue("\(service.name).rpc").messageCount == 0)
        }
    }

    /// With one request at a time, a request left unacked would block the next: each hostile
    /// reply address must still end with an ack, and the next call be served.
    @Test(
        "a reply that cannot be delivered does not hold the request: the next call is served",
        arguments: [
            ("no such queue", "no-such-queue-\(UUID().uuidString)"),
            ("bogus direct reply-to", "amq.rabbitmq.reply-to.bogus"),
            ("NUL", "reply\u{0}to"),
            ("255 bytes", String(repeating: "r", count: 255)),
            ("empty", ""),
            ("exchange-like", "amq.direct"),
        ])
    func hostileReplyTo(label: String, replyTo: String) async throws {
        try await withRPC(configuration: .init(prefetch: 1, concurrency: 1)) { service, client, connection in
            let channel = try await connection.openChannel()
            for index in 0..<3 {
                try await channel.publish(
                    Data(#"{"text":"hostile"}"#.utf8), routingKey: "\(service.name).rpc",
                    properties: AMQPProperties(correlationID: "h-\(index)", replyTo: replyTo, type: "\(service.name).echo"))
            }
            // One at a time: the third runs only once the second was acked.
            try await waitUntil { service.executed.withLock { $0 }.filter { $0 == "hostile" }.count == 3 }
            let reply = try await client.call("\(service.name).echo", Echo(text: "next"), as: Echo.self, timeout: .seconds(5))
            #expect(reply.text == "next", "\(label)")
        }
    }

    @Test("a reply larger than the limit becomes an internal error reply; the request is acked")
    func oversizedReply() async throws {
        try await withRPC(configuration: .init(prefetch: 1, concurrency: 1, maxReplyBytes: 64)) { service, client, _ in
            await #expect {
                _ = try await client.call("\(service.name).echo", Echo(text: String(repeating: "y", count: 100)), as: Echo.self)
            } throws: { error in
                (error as? ServiceError)?.code == .internal && (error as? ServiceError)?.message.contains("more than the 64") == true
            }
            let reply = try await client.call("\(service.name).echo", Echo(text: "small"), as: Echo.self)
            #expect(reply.text == "small")
        }
    }

    @Test("while the broker is unreachable a call is unavailable at once, not at its deadline")
    func brokerDown() async throws {
        let proxy = try TCPProxy()
        var configuration = try AMQPConfiguration(url: proxy.url(through: Broker.url))
        configuration.connectionName = "test-broker-down"
        let connection = try await AMQPConnection.connect(configuration)
        let client = try await RPCClient.start(connection: connection)
        // Keeps the calls' deadlines for this scope (cancelled at its end).
        async let _ = client.run()
        // The link dies and new ones hang: the client cannot reconnect until `restore()`.
        proxy.blackhole()
        proxy.cut()
        try await waitUntil(within: .seconds(10)) { !connection.isConnected }
        let started = ContinuousClock.now
        await #expect {
            _ = try await client.call("anything.get", Echo(text: "x"), as: Echo.self, timeout: .seconds(5))
        } throws: { error in
            (error as? ServiceError)?.code == .unavailable
        }
        #expect(started.duration(to: .now) < .milliseconds(500))
        proxy.cut()
        proxy.restore()
        try await waitUntil(within: .seconds(30)) { connection.isConnected }
        await client.close()
        await connection.close()
        proxy.stop()
    }

    @Test("a request queue declared earlier without dead-lettering is a clear error naming it and what to do")
    func queueWithoutDeadLettering() async throws {
        let connection = try await Broker.connect()
        let channel = try await connection.openChannel()
        let queue = Broker.unique("rpc-old") + ".rpc"
        try await channel.declareQueue(queue)
        await #expect {
            try await DeadLettering.declare(queue, deadLetterQueue: queue + ".dlq", on: try await connection.openChannel())
        } throws: { error in
            let text = "\(error)"
            return text.contains(queue) && text.contains("delete_queue") && text.contains(queue + ".dlq")
        }
        let cleanup = try await connection.openChannel()
        _ = try? await cleanup.deleteQueue(queue)
        _ = try? await cleanup.deleteQueue(queue + ".dlq")
        await connection.close()
    }
}
