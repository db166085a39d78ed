import Foundation
import Testing
import WarrenTestSupport
import WarrenAMQP

@Suite("Connecting and recovering", .timeLimit(.minutes(2)))
struct ConnectionTests {
    @Test("a wrong password is reported as an authentication failure")
    func wrongPassword() async throws {
        var configuration = try Broker.configuration()
        configuration.password = "not-the-password"
        configuration.recovery.isEnabled = false
        await #expect {
            _ = try await AMQPConnection.connect(configuration)
        } throws: { error in
            guard case .authenticationFailed(let user, _, _) = error as? AMQPError else { return false }
            return user == configuration.user
        }
    }

    @Test("an unknown vhost is reported as an authentication failure naming the vhost")
    func unknownVhost() async throws {
        var configuration = try Broker.configuration()
        configuration.vhost = Broker.unique("no-such-vhost")
        await #expect {
            _ = try await AMQPConnection.connect(configuration)
        } throws: { error in
            guard case .authenticationFailed(_, let vhost, _) = error as? AMQPError else { return false }
            return vhost == configuration.vhost
        }
    }

    @Test("channel_max leaves the channels it allows: 1 is an invalid argument saying why, 2 opens one and refuses the next; the connection stays")
    func channelMax() async throws {
        for (channelMax, opened) in [(1, 0), (2, 1)] {
            var configuration = try Broker.configuration()
            configuration.channelMax = channelMax
            configuration.recovery.isEnabled = false
            let connection = try await AMQPConnection.connect(configuration)
            var channels: [AMQPChannel] = []
            for _ in 0..<opened { channels.append(try await connection.openChannel()) }
            await #expect {
                _ = try await connection.openChannel()
            } throws: { error in
                switch error as? AMQPError {
                case .invalidArgument(let detail): channelMax == 1 && detail.contains("channel_max is 1")
                case .protocolError(let detail): channelMax == 2 && detail.contains("all 2 channels are in use")
                default: false
                }
            }
            #expect(connection.isConnected, "channel_max=\(channelMax): the connection is still open")
            for channel in channels { await channel.close() }
            await connection.close()
        }
    }

    @Test("nothing listening on the port is reported as connection refused, promptly")
    func refused() async throws {
        var configuration = try Broker.configuration()
        configuration.port = 1
        let started = ContinuousClock.now
        await #expect {
            _ = try await AMQPConnection.connect(configuration)
        } throws: { error in
            guard case .connectionRefused(_, let port, _) = error as? AMQPError else { return false }
            return port == 1
        }
        #expect(started.duration(to: .now) < .seconds(3))
    }

    @Test("an idle connection with a 2 s heartbeat stays open for 10 s")
    func heartbeatKeepsIdleConnection() async throws {
        var configuration = try Broker.configuration()
        configuration.heartbeat = .seconds(2)
        configuration.recovery.isEnabled = false  // a dropped connection must show, not be hidden by recovery
        let connection = try await AMQPConnection.connect(configuration)
        let channel = try await connection.openChannel()
        try await Task.sleep(for: .seconds(10))
        #expect(connection.isConnected)
        let queue = Broker.unique("heartbeat")
        try await channel.declareQueue(queue, durable: false, autoDelete: true)
        try await channel.deleteQueue(queue)
        #expect(BrokerControl.connectionCount(named: configuration.connectionName) == 1)
        await connection.close()
    }

    @Test("the broker closing the connection mid-consume: the consumer resumes and no confirmed message is lost")
    func recoveryDuringConsume() async throws {
        var configuration = try Broker.configuration()
        configuration.recovery.initialBackoff = .milliseconds(50)
        let connection = try await AMQPConnection.connect(configuration)
        let queue = Broker.unique("recovery")
        let publisher = try await connection.openChannel()
        try await publisher.enableConfirms()
        try await publisher.declareQueue(queue)
        let consumerChannel = try await connection.openChannel()
        try await consumerChannel.setPrefetch(50)
        let consumer = try await consumerChannel.consume(queue: queue)

        let total = 3000
        let received = ReceivedLog()
        let consuming = Task {
            for try await delivery in consumer {
                let index = Int(String(decoding: delivery.body, as: UTF8.self)) ?? -1
                // An ack for a delivery from before the drop is refused (staleDelivery); the
                // broker redelivers that message, so it is not lost.
                let acked = (try? delivery.ack()) != nil
                await received.record(index, acked: acked)
            }
        }
        var confirmed = Set<Int>()
        var closedOnBroker = false
        for index in 0..<total {
            if index == total / 2 {
                try await BrokerControl.closeConnections(named: configuration.connectionName)
                closedOnBroker = true
            }
            // A publish interrupted by the drop has an unknown fate: publish it again.
            for _ in 0..<20 {
                do {
                    try await publisher.publish(Data("\(index)".utf8), routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))
                    confirmed.insert(index)
                    break
                } catch AMQPError.connectionLost, AMQPError.connectionClosed {
                    continue
                }
            }
        }
        #expect(closedOnBroker)
        #expect(confirmed.count == total)
        let deadline = ContinuousClock.now + .seconds(20)
        while await !received.acked.isSuperset(of: confirmed), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        let acked = await received.acked
        #expect(acked.isSuperset(of: confirmed), "missing \(confirmed.subtracting(acked).count) confirmed messages")
        #expect(connection.isConnected)
        consuming.cancel()
        try await publisher.deleteQueue(queue)
        await connection.close()
    }

    @Test("an ack for a delivery from before a reconnect fails clearly and the message is redelivered")
    func staleAckAfterRecovery() async throws {
        var configuration = try Broker.configuration()
        configuration.recovery.initialBackoff = .milliseconds(50)
        let connection = try await AMQPConnection.connect(configuration)
        let queue = Broker.unique("stale")
        let channel = try await connection.openChannel()
        try await channel.declareQueue(queue)
        try await channel.enableConfirms()
        try await channel.publish(Data("once".utf8), routingKey: queue)
        let consumer = try await channel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        let first = try #require(try await iterator.next())
        try await BrokerControl.closeConnections(named: configuration.connectionName)
        let redelivered = try #require(try await iterator.next())
        #expect(throws: AMQPError.staleDelivery(deliveryTag: first.deliveryTag)) { try first.ack() }
        #expect(redelivered.redelivered)
        #expect(redelivered.body == Data("once".utf8))
        try redelivered.ack()
        try await channel.deleteQueue(queue)
        await connection.close()
    }

    @Test("pending confirms fail with a clear error when the connection drops, and later publishes work")
    func pendingConfirmsFailOnDrop() async throws {
        var configuration = try Broker.configuration()
        configuration.recovery.initialBackoff = .milliseconds(50)
        let connection = try await AMQPConnection.connect(configuration)
        let queue = Broker.unique("pending")
        let channel = try await connection.openChannel()
        try await channel.declareQueue(queue)
        try await channel.enableConfirms()
        let outcomes = try await withThrowingTaskGroup(of: Result<Void, AMQPError>.self) { group in
            for index in 0..<5000 {
                group.addTask {
                    do {
                        try await channel.publish(Data("\(index)".utf8), routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))
                        return .success(())
                    } catch let error as AMQPError {
                        return .failure(error)
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(30))
            try await BrokerControl.closeConnections(named: configuration.connectionName)
            var outcomes: [Result<Void, AMQPError>] = []
            for try await outcome in group { outcomes.append(outcome) }
            return outcomes
        }
        // Every publish finished one way or the other (none hung), and failures name the cause.
        #expect(outcomes.count == 5000)
        for case .failure(let error) in outcomes {
            switch error {
            case .connectionLost, .connectionClosed: break
            default: Issue.record("unexpected error \(error)")
            }
        }
        try await channel.publish(Data("after".utf8), routingKey: queue)
        try await channel.deleteQueue(queue)
        await connection.close()
    }
}

actor ReceivedLog {
    private(set) var acked = Set<Int>()
    private(set) var count = 0

    func record(_ index: Int, acked wasAcked: Bool) {
        count += 1
        if wasAcked { acked.insert(index) }
    }
}

@Suite("Network failures", .timeLimit(.minutes(1)))
struct NetworkFailureTests {
    /// A connection through a proxy, with a short heartbeat so a dead link shows quickly.
    private func connectThroughProxy(_ proxy: TCPProxy, name: String = #function) async throws -> AMQPConnection {
        var configuration = try Broker.configuration(name: name)
        configuration.host = "127.0.0.1"
        configuration.port = Int(proxy.port)
        configuration.heartbeat = .seconds(1)
        configuration.recovery.initialBackoff = .milliseconds(50)
        configuration.recovery.maxBackoff = .milliseconds(500)
        return try await AMQPConnection.connect(configuration)
    }

    @Test("a silent network cut is detected by heartbeats and the consumer resumes after it heals")
    func silentCut() async throws {
        let proxy = try TCPProxy()
        defer { proxy.stop() }
        let connection = try await connectThroughProxy(proxy)
        let queue = Broker.unique("silent-cut")
        let channel = try await connection.openChannel()
        try await channel.declareQueue(queue)
        try await channel.enableConfirms()
        let consumerChannel = try await connection.openChannel()
        let consumer = try await consumerChannel.consume(queue: queue)
        var iterator = consumer.makeAsyncIterator()
        try await channel.publish(Data("before".utf8), routingKey: queue)
        let before = try #require(try await iterator.next())
        try before.ack()

        proxy.blackhole()
        let cutAt = ContinuousClock.now
        try await waitUntil(within: .seconds(10)) { !connection.isConnected }
        // Two missed heartbeats of 1 s, plus a tick.
        #expect(cutAt.duration(to: .now) < .seconds(5))
        proxy.cut()
        proxy.restore()
        try await waitUntil(within: .seconds(10)) { connection.isConnected }

        try await channel.publish(Data("after".utf8), routingKey: queue)
        var after = try #require(try await iterator.next())
        if after.body == Data("before".utf8) {
            // Its ack may have been lost in the cut: at-least-once means it comes back, flagged.
            #expect(after.redelivered)
            after = try #require(try await iterator.next())
        }
        #expect(after.body == Data("after".utf8))
        try after.ack()
        try await channel.deleteQueue(queue)
        await connection.close()
    }

    @Test("a broken link (connection reset) fails pending work promptly and recovers")
    func hardCut() async throws {
        let proxy = try TCPProxy()
        defer { proxy.stop() }
        let connection = try await connectThroughProxy(proxy)
        let queue = Broker.unique("hard-cut")
        let channel = try await connection.openChannel()
        try await channel.declareQueue(queue, durable: false)
        proxy.cut()
        // Detection and reconnection can both happen between two looks at isConnected.
        try await waitUntil(within: .seconds(10)) { connection.recoveries == 1 && connection.isConnected }
        // The non-durable queue was declared again on the new connection.
        try await channel.publish(Data("x".utf8), routingKey: queue)
        #expect(try await pollGet(channel, queue: queue)?.body == Data("x".utf8))
        try await channel.deleteQueue(queue)
        await connection.close()
    }

    @Test("a connection that dies without recovery makes its service's run() throw; one cancelled returns, closed")
    func serviceLearnsOfDeath() async throws {
        let proxy = try TCPProxy()
        defer { proxy.stop() }
        var configuration = try Broker.configuration(name: #function)
        configuration.host = "127.0.0.1"
        configuration.port = Int(proxy.port)
        configuration.recovery.isEnabled = false
        let connection = try await AMQPConnection.connect(configuration)
        async let ran: Result<Void, any Error> = { () async -> Result<Void, any Error> in
            do {
                try await connection.run()
                return .success(())
            } catch {
                return .failure(error)
            }
        }()
        proxy.cut()
        guard case .failure(let error) = await ran else {
            Issue.record("run() returned although the connection died")
            return
        }
        #expect(error is AMQPError)
        #expect(!connection.isConnected)

        let healthy = try await AMQPConnection.connect(try Broker.configuration(name: #function + "-healthy"))
        let service = Task { try await healthy.run() }
        try await Task.sleep(for: .milliseconds(200))
        #expect(healthy.isConnected)
        service.cancel()  // as a ServiceGroup does to a service after shutdown
        try await service.value
        #expect(!healthy.isConnected)
    }
}
