import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import WarrenTestSupport
import Warren
import WarrenAMQP

struct Echo: Codable, Sendable, Validatable {
    var text: String
    var sleepMilliseconds: Int?

    func validate() throws(ServiceError) {
        try Check.length(text, "text", 1...100)
    }
}

/// A responder for a service named uniquely for the test, with echo, sleep and failing operations.
final class TestService: Sendable {
    let name: String
    let connection: AMQPConnection
    let executed = Mutex<[String]>([])
    /// The threads the echo handler ran on (`/proc/thread-self/comm`).
    let threads = Mutex<Set<String>>([])
    private let task: Mutex<Task<Void, any Error>?> = Mutex(nil)
    let group: Mutex<ServiceGroup?> = Mutex(nil)

    init(connection: AMQPConnection) {
        name = "t\(UUID().uuidString.prefix(8).lowercased())"
        self.connection = connection
    }

    var handlers: RPCHandlers {
        var handlers = RPCHandlers()
        handlers.on("\(name).echo", Echo.self) { request, context in
            self.executed.withLock { $0.append(request.text) }
            self.threads.withLock { _ = $0.insert(currentThreadName()) }
            if let sleep = request.sleepMilliseconds { try await Task.sleep(for: .milliseconds(sleep)) }
            return Echo(text: request.text)
        }
        handlers.on("\(name).fail", Echo.self) { _, _ -> Echo in
            struct Secret: Error { let detail = "database password is hunter2" }
            throw Secret()
        }
        handlers.on("\(name).missing", Echo.self) { request, _ -> Echo in
            throw ServiceError.notFound("no echo called \(request.text)")
        }
        return handlers
    }

    func start(configuration: RPCResponder.Configuration = .init()) async throws {
        let responder = RPCResponder(service: name, connection: connection, handlers: handlers, configuration: configuration)
        let group = ServiceGroup(services: [responder], gracefulShutdownSignals: [], logger: Logger(label: "test"))
        self.group.withLock { $0 = group }
        task.withLock { $0 = Task { try await group.run() } }
        // Ready when the broker shows the consumer.
        let channel = try await connection.openChannel()
        for _ in 0..<200 {
            if let info = try? await channel.inspectQueue("\(name).rpc"), info.consumerCount > 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        await channel.close()
    }

    func stop() async {
        await group.withLock { $0 }?.triggerGracefulShutdown()
        _ = try? await task.withLock { $0 }?.value
    }

    func cleanUp() async {
        await stop()
        if let channel = try? await connection.openChannel() {
            _ = try? await channel.deleteQueue("\(name).rpc")
            _ = try? await channel.deleteQueue("\(name).rpc.dlq")
        }
    }
}

@discardableResult
func withRPC<T>(
    name: String = #function, configuration: RPCResponder.Configuration = .init(),
    _ body: (TestService, RPCClient, AMQPConnection) async throws -> T
) async throws -> T {
    let connection = try await Broker.connect(name: name)
    let service = TestService(connection: connection)
    try await service.start(configuration: configuration)
    let client = try await RPCClient.start(connection: connection)
    // Keeps the calls' deadlines for this scope (cancelled at its end).
    async let _ = client.run()
    let result: Result<T, any Error>
    do {
        result = .success(try await body(service, client, connection))
    } catch {
        result = .failure(error)
    }
    await client.close()
    await service.cleanUp()
    await connection.close()
    return try result.get()
}

@Suite("RPC", .timeLimit(.minutes(2)))
struct RPCTests {
    @Test("a call gets its reply")
    func roundTrip() async throws {
        try await withRPC { service, client, _ in
            let reply = try await client.call("\(service.name).echo", Echo(text: "hello"), as: Echo.self)
            #expect(reply.text == "hello")
        }
    }

    @Test("handlers run on the connection's I/O thread by default, before and after awaiting, but for large bodies; with executor .pool, never there")
    func handlerExecutor() async throws {
        for executor in HandlerExecutor.allCases {
            try await withRPC(configuration: .init(executor: executor)) { service, client, _ in
                for text in ["a", "b", "c"] {
                    // The handler also sleeps: it resumes where it prefers to run.
                    let reply = try await client.call("\(service.name).echo", Echo(text: text, sleepMilliseconds: 5), as: Echo.self)
                    #expect(reply.text == text)
                }
                let threads = service.threads.withLock { $0 }
                if executor == .ioThread {
                    #expect(threads == ["warren-amqp-io"])
                } else {
                    #expect(!threads.isEmpty && !threads.contains("warren-amqp-io"))
                }
                // A body over HandlerExecutor.largeBodyBytes is decoded and handled on the pool
                // whatever the executor: decoding it would hold the connection's thread.
                service.threads.withLock { $0 = [] }
                let padding = String(repeating: "x", count: HandlerExecutor.largeBodyBytes)
                let reply = try await client.call("\(service.name).echo", body: Data(#"{"text":"large","padding":"\#(padding)"}"#.utf8))
                #expect(!reply.isError)
                let large = service.threads.withLock { $0 }
                #expect(!large.isEmpty && !large.contains("warren-amqp-io"))
            }
        }
    }

    @Test("1,000 concurrent calls are all answered, each with its own reply")
    func concurrentCalls() async throws {
        try await withRPC { service, client, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<1000 {
                    group.addTask {
                        let reply = try await client.call("\(service.name).echo", Echo(text: "call \(index)"), as: Echo.self)
                        #expect(reply.text == "call \(index)")
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test("several calls of one flow (same correlation id) at once do not cross")
    func sameCorrelationID() async throws {
        try await withRPC { service, client, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let envelope = Envelope(correlationID: "one-flow")
                        let reply = try await client.call("\(service.name).echo", Echo(text: "\(index)"), as: Echo.self, envelope: envelope)
                        #expect(reply.text == "\(index)")
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test("past its deadline a call throws timeout, within 100 ms; the late reply is dropped")
    func deadline() async throws {
        try await withRPC { service, client, _ in
            let started = ContinuousClock.now
            await #expect(throws: ServiceError.timeout("no reply from \(service.name).rpc before the deadline")) {
                _ = try await client.call("\(service.name).echo", Echo(text: "slow", sleepMilliseconds: 600), as: Echo.self, timeout: .milliseconds(300))
            }
            let elapsed = started.duration(to: .now)
            #expect(elapsed >= .milliseconds(300))
            #expect(elapsed < .milliseconds(400))
            try await waitUntil { client.lateReplies == 1 }
        }
    }

    @Test("a request whose deadline passed while queued is not executed")
    func expiredRequestNotExecuted() async throws {
        try await withRPC { service, client, connection in
            // A plain client sends a request whose x-deadline is already over (no expiration).
            let channel = try await connection.openChannel()
            let replies = try await channel.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            let past = Int64(Date().addingTimeInterval(-1).timeIntervalSince1970 * 1000)
            try await channel.publish(
                Data(#"{"text":"too late"}"#.utf8), routingKey: "\(service.name).rpc",
                properties: AMQPProperties(
                    headers: ["x-deadline": .int(past)], correlationID: "late-1", replyTo: "amq.rabbitmq.reply-to", type: "\(service.name).echo"))
            let reply = try #require(try await replies.first(1).first)
            #expect(reply.properties.headers?["x-status"] == "error")
            #expect(String(decoding: reply.body, as: UTF8.self).contains(#""code":"timeout""#))
            #expect(service.executed.withLock { $0 }.isEmpty)
        }
    }

    @Test(
        "a reply whose x-status is neither ok nor error is internal, never a success (nor an error body taken for a result)",
        arguments: [nil, "weird", "ERROR", "", "ok ", AMQPFieldValue.int(1), AMQPFieldValue.bytes(Data([0xFF, 0xFE]))] as [AMQPFieldValue?])
    func replyWithoutValidStatus(status: AMQPFieldValue?) async throws {
        try await withRPC { service, client, connection in
            // A stand-in for the service that answers every request with the same odd reply.
            await service.stop()
            let channel = try await connection.openChannel()
            _ = try await channel.consume(queue: "\(service.name).rpc", noAck: true) { event in
                guard case .delivery(let request) = event, let replyTo = request.properties.replyTo else { return }
                Task {
                    try? await channel.publish(
                        Data(#"{"error":{"code":"not_found","message":"gone"}}"#.utf8), routingKey: replyTo,
                        properties: AMQPProperties(
                            contentType: "application/json", headers: status.map { [WireHeader.status: $0] } ?? [:],
                            correlationID: request.properties.correlationID))
                }
            }
            await #expect {
                _ = try await client.call("\(service.name).echo", Echo(text: "x"), as: Echo.self, timeout: .seconds(5))
            } throws: { error in
                // `isInvalidStatus`: what the gateway answers 502 rather than as the service's own error.
                (error as? ServiceError).map(RPCClient.isInvalidStatus) == true
                    && (error as? ServiceError)?.message.contains("x-status") == true
            }
        }
    }

    @Test("no queue for the operation: unavailable at once")
    func missingQueue() async throws {
        try await withRPC { _, client, _ in
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.call("nosuchservice\(UUID().uuidString.prefix(6)).get", Echo(text: "x"), as: Echo.self)
            } throws: { error in
                (error as? ServiceError)?.code == .unavailable
            }
            #expect(started.duration(to: .now) < .seconds(1))
        }
    }

    @Test("a queue nobody consumes: timeout (outcome unknown, never unavailable) well under the deadline")
    func queueWithoutConsumers() async throws {
        try await withRPC { service, client, _ in
            await service.stop()
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.call("\(service.name).echo", Echo(text: "anyone?"), as: Echo.self)
            } throws: { error in
                // The request stays queued and would run if an instance started before its deadline.
                (error as? ServiceError)?.code == .timeout && (error as? ServiceError)?.message.contains("outcome is unknown") == true
            }
            #expect(started.duration(to: .now) < .seconds(2))  // the deadline is 5 s
        }
    }

    @Test("malformed JSON, a failing field, an unknown or missing type: error replies, and serving goes on", arguments: [
        (#"{"text": "#, "text/plain", ServiceError.Code.invalid, "not valid JSON"),
        (#"{"text": 42}"#, "echo", .invalid, "field 'text' must be a string"),
        (#"{}"#, "echo", .invalid, "field 'text' is required"),
        (#"{"text": ""}"#, "echo", .invalid, "field 'text' must be 1 to 100 characters long"),
        (#"{"text": "x"}"#, "nope", .invalid, "unknown operation"),
        (#"{"text": "x"}"#, "", .invalid, "no AMQP 'type'"),
        (#"{"text": "x"}"#, "fail", .internal, "internal error"),
        (#"{"text": "x"}"#, "missing", .notFound, "no echo called x"),
    ])
    func badRequests(body: String, operation: String, code: ServiceError.Code, message: String) async throws {
        try await withRPC { service, _, connection in
            let channel = try await connection.openChannel()
            let replies = try await channel.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            let type: String? = switch operation {
            case "": nil
            case "text/plain": "\(service.name).echo"
            default: "\(service.name).\(operation)"
            }
            try await channel.publish(
                Data(body.utf8), routingKey: "\(service.name).rpc",
                properties: AMQPProperties(correlationID: "bad-1", replyTo: "amq.rabbitmq.reply-to", type: type))
            try await channel.publish(
                Data(#"{"text":"still here"}"#.utf8), routingKey: "\(service.name).rpc",
                properties: AMQPProperties(correlationID: "good-1", replyTo: "amq.rabbitmq.reply-to", type: "\(service.name).echo"))
            let received = try await replies.first(2)
            #expect(received.count == 2)
            let bad = try #require(received.first { $0.properties.correlationID == "bad-1" })
            #expect(bad.properties.headers?["x-status"] == "error")
            let error = try JSONDecoder().decode([String: ServiceError].self, from: bad.body)["error"]
            #expect(error?.code == code)
            #expect(error?.message.contains(message) == true, "\(error?.message ?? "-")")
            #expect(error?.message.contains("hunter2") == false)
            let good = try #require(received.first { $0.properties.correlationID == "good-1" })
            #expect(good.properties.headers?["x-status"] == "ok")
        }
    }

    @Test("a plain AMQP client (reply_to, correlation_id, type, JSON body only) can call a Warren responder")
    func plainClient() async throws {
        try await withRPC { service, _, connection in
            let channel = try await connection.openChannel()
            let replies = try await channel.consume(queue: "amq.rabbitmq.reply-to", noAck: true)
            try await channel.publish(
                Data(#"{"text":"from pika"}"#.utf8), routingKey: "\(service.name).rpc",
                properties: AMQPProperties(correlationID: "plain-1", replyTo: "amq.rabbitmq.reply-to", type: "\(service.name).echo"))
            let reply = try #require(try await replies.first(1).first)
            #expect(reply.properties.correlationID == "plain-1")
            #expect(reply.properties.contentType == "application/json")
            #expect(reply.properties.headers?["x-status"] == "ok")
            #expect(try JSONDecoder().decode(Echo.self, from: reply.body).text == "from pika")
        }
    }

    @Test("an invalid command without reply_to is parked in the dead-letter queue with the reason")
    func invalidCommandParked() async throws {
        try await withRPC { service, _, connection in
            let channel = try await connection.openChannel()
            try await channel.publish(
                Data(#"{"text": 1}"#.utf8), routingKey: "\(service.name).rpc",
                properties: AMQPProperties(messageID: "cmd-1", type: "\(service.name).echo"))
            let parked = try #require(try await pollGet(channel, queue: "\(service.name).rpc.dlq"))
            #expect(parked.properties.messageID == "cmd-1")
            #expect(parked.properties.headers?["x-error"]?.stringValue?.contains("text") == true)
            try parked.ack()
        }
    }

    @Test("graceful shutdown with 100 requests in flight: every one is answered")
    func drainOnShutdown() async throws {
        try await withRPC(configuration: .init(prefetch: 128, concurrency: 128)) { service, client, _ in
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        let reply = try await client.call("\(service.name).echo", Echo(text: "\(index)", sleepMilliseconds: 300), as: Echo.self)
                        return reply.text == "\(index)"
                    }
                }
                // In flight means held by the service: all 100 handlers have started.
                try await waitUntil(within: .seconds(10)) { service.executed.withLock { $0.count } == 100 }
                await service.stop()
                var results: [Bool] = []
                for try await result in group { results.append(result) }
                return results
            }
            #expect(results.count == 100)
            #expect(results.allSatisfy { $0 })
        }
    }

    @Test("someone deletes the service's queue: the responder declares it again and keeps serving")
    func queueDeletedUnderResponder() async throws {
        try await withRPC { service, client, connection in
            let channel = try await connection.openChannel()
            try await channel.deleteQueue("\(service.name).rpc")
            var reply: Echo?
            let deadline = ContinuousClock.now + .seconds(10)
            while reply == nil, ContinuousClock.now < deadline {
                reply = try? await client.call("\(service.name).echo", Echo(text: "back"), as: Echo.self, timeout: .seconds(1))
                if reply == nil { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(reply?.text == "back")
        }
    }

    @Test("the connection drops: calls in flight fail promptly with timeout (outcome unknown); later calls work")
    func connectionLost() async throws {
        var configuration = try Broker.configuration()
        configuration.recovery.initialBackoff = .milliseconds(50)
        let clientConnection = try await AMQPConnection.connect(configuration)
        let serverConnection = try await Broker.connect()
        let service = TestService(connection: serverConnection)
        try await service.start()
        let client = try await RPCClient.start(connection: clientConnection)
        // Keeps the calls' deadlines for this scope (cancelled at its end).
        async let _ = client.run()
        let inFlight = Task {
            // Slower than rabbitmqctl on a busy machine, so the drop comes first.
            try await client.call("\(service.name).echo", Echo(text: "slow", sleepMilliseconds: 8000), as: Echo.self, timeout: .seconds(15))
        }
        try await Task.sleep(for: .milliseconds(200))
        try await BrokerControl.closeConnections(named: configuration.connectionName)
        let dropped = ContinuousClock.now
        await #expect {
            _ = try await inFlight.value
        } throws: { error in
            // The request was delivered and may run: not `unavailable`.
            (error as? ServiceError)?.code == .timeout
        }
        #expect(dropped.duration(to: .now) < .seconds(1))
        try await waitUntil(within: .seconds(10)) { clientConnection.isConnected }
        let reply = try await client.call("\(service.name).echo", Echo(text: "again"), as: Echo.self)
        #expect(reply.text == "again")
        await client.close()
        await service.cleanUp()
        await clientConnection.close()
        await serverConnection.close()
    }
}


