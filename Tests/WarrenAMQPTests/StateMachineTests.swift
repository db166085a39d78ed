import Foundation
import Synchronization
import Testing
@testable import WarrenAMQP

// The connection's rules without a socket: each test drives a state machine through what the
// broker tests (ConnectionTests, RobustnessTests, TopologyTests) provoke with a real broker.

private typealias Node = AMQPConfiguration.Endpoint
private let nodes = [Node(host: "a", port: 1), Node(host: "b", port: 2), Node(host: "c", port: 3)]
private let lost = AMQPError.connectionLost(reason: "connection reset by peer")

private func machine(
    _ endpoints: [Node] = nodes, start: Int = 0, recovery: AMQPConfiguration.Recovery = .init(), jitter: Double = 0.5
) -> ConnectionStateMachine {
    ConnectionStateMachine(rotation: NodeRotation(endpoints: endpoints, start: start), recovery: recovery, jitter: { jitter })
}

/// A machine that connected to its first node and serves.
private func serving(_ endpoints: [Node] = nodes, recovery: AMQPConfiguration.Recovery = .init()) -> ConnectionStateMachine {
    var connection = machine(endpoints, recovery: recovery)
    _ = connection.start()
    _ = connection.connected()
    return connection
}

@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    @Test("the first connection tries the start node and serves once it is up")
    func firstConnection() {
        var connection = machine(start: 1)
        #expect(connection.start() == .connect(nodes[1]))
        #expect(connection.connected() == .serve(.connected))
        #expect(connection.state == .open)
    }

    @Test("a first connection that fails tries each node once, then fails naming every node")
    func firstConnectionFailsOverEveryNode() {
        var connection = machine()
        _ = connection.start()
        let refused = AMQPError.connectionRefused(host: "a", port: 1, reason: "refused")
        #expect(connection.connectFailed(refused) == .connect(nodes[1]))
        #expect(connection.connectFailed(refused) == .connect(nodes[2]))
        guard case .finish(.connectionRefused(let host, _, let reason)) = connection.connectFailed(refused) else {
            Issue.record("expected the first connection to fail")
            return
        }
        #expect(host == "a")
        #expect(reason.contains("no node answered") && reason.contains("b:2") && reason.contains("c:3"))
        #expect(connection.state == .finished(.connectionRefused(host: "a", port: 1, reason: reason)))
    }

    @Test("one node that refuses fails the first connection with its own error")
    func singleNodeRefuses() {
        var connection = machine([nodes[0]])
        _ = connection.start()
        let refused = AMQPError.connectionRefused(host: "a", port: 1, reason: "refused")
        #expect(connection.connectFailed(refused) == .finish(refused))
    }

    @Test("a refused login ends the first connection at once: every node of a cluster says the same")
    func authenticationFailureIsFinal() {
        var connection = machine()
        _ = connection.start()
        let denied = AMQPError.authenticationFailed(user: "guest", vhost: "/", reason: "403")
        #expect(connection.connectFailed(denied) == .finish(denied))
    }

    @Test("lost connection → consumers interrupted → the next node → topology and consumers restored → serving")
    func recoveryPath() {
        var connection = serving()
        let now = ContinuousClock.now
        #expect(connection.connectionLost(lost, now: now) == .interruptChannels(lost))
        // The node lost (a) comes last.
        #expect(connection.channelsReleased() == .connect(nodes[1]))
        #expect(connection.connected() == .restore)
        #expect(connection.restored(now: now + .seconds(1)) == .serve(.recovered(attempt: 1, node: nodes[1], lost: nodes[0])))
        #expect(connection.state == .open)
    }

    @Test("recovery tries every node once per round, then pauses with a jittered backoff that grows", arguments: [0.0, 0.5, 1.0])
    func roundsAndBackoff(jitter: Double) {
        var connection = machine(recovery: .init(initialBackoff: .milliseconds(100), maxBackoff: .seconds(5)), jitter: jitter)
        _ = connection.start()
        _ = connection.connected()
        _ = connection.connectionLost(lost, now: .now)
        #expect(connection.channelsReleased() == .connect(nodes[1]))
        #expect(connection.connectFailed(lost) == .connect(nodes[2]))
        #expect(connection.connectFailed(lost) == .connect(nodes[0]))
        let first = NodeRotation.backoff(afterRound: 0, initial: .milliseconds(100), maximum: .seconds(5), fraction: jitter)
        #expect(connection.connectFailed(lost) == .pause(first, .betweenRounds(nextRound: 2)))
        #expect(connection.pauseEnded() == .connect(nodes[1]))
        #expect(connection.connectFailed(lost) == .connect(nodes[2]))
        // Restoring can fail too (the new connection died under it): the next node.
        #expect(connection.connected() == .restore)
        #expect(connection.restoreFailed(lost) == .connect(nodes[0]))
        let second = NodeRotation.backoff(afterRound: 1, initial: .milliseconds(100), maximum: .seconds(5), fraction: jitter)
        #expect(connection.connectFailed(lost) == .pause(second, .betweenRounds(nextRound: 3)))
        #expect(second >= first)
        #expect(connection.pauseEnded() == .connect(nodes[1]))
        #expect(connection.connected() == .restore)
        #expect(connection.restored(now: .now) == .serve(.recovered(attempt: 7, node: nodes[1], lost: nodes[0])))
    }

    @Test("the backoff is jittered: different draws give different pauses under the same cap")
    func jitterSpreadsReconnects() {
        var pauses = Set<Duration>()
        for draw in [0.1, 0.4, 0.9] {
            var connection = machine([nodes[0]], jitter: draw)
            _ = connection.start()
            _ = connection.connected()
            _ = connection.connectionLost(lost, now: .now)
            _ = connection.channelsReleased()
            guard case .pause(let pause, _) = connection.connectFailed(lost) else {
                Issue.record("expected a pause")
                return
            }
            #expect(pause <= .milliseconds(100))
            pauses.insert(pause)
        }
        #expect(pauses.count == 3)
    }

    @Test("a connection lost again within 2 s of recovering pauses before its first attempt; one that lasted does not")
    func flapping() {
        var connection = serving([nodes[0]])
        let start = ContinuousClock.now
        _ = connection.connectionLost(lost, now: start)
        _ = connection.channelsReleased()
        _ = connection.connected()
        _ = connection.restored(now: start)
        #expect(connection.connectionLost(lost, now: start + .milliseconds(300)) == .interruptChannels(lost))
        guard case .pause(_, .flapping) = connection.channelsReleased() else {
            Issue.record("expected a pause before reconnecting")
            return
        }
        #expect(connection.pauseEnded() == .connect(nodes[0]))
        _ = connection.connected()
        _ = connection.restored(now: start + .seconds(1))
        _ = connection.connectionLost(lost, now: start + .seconds(60))
        #expect(connection.channelsReleased() == .connect(nodes[0]))
    }

    @Test("without recovery a lost connection finishes with its error (AMQPConnection.run throws it)")
    func recoveryDisabled() {
        var connection = serving(recovery: .init(isEnabled: false))
        #expect(connection.connectionLost(lost, now: .now) == .finish(lost))
        #expect(connection.state == .finished(lost))
    }

    @Test("a heartbeat timeout is a lost connection: it recovers like a reset")
    func heartbeatTimeout() {
        var connection = serving()
        let timeout = AMQPError.connectionLost(reason: "a socket error occurred: heartbeat timeout")
        #expect(connection.connectionLost(timeout, now: .now) == .interruptChannels(timeout))
        #expect(connection.channelsReleased() == .connect(nodes[1]))
    }

    @Test("the broker closing the connection (320 CONNECTION_FORCED) recovers too")
    func brokerClosesConnection() {
        var connection = serving()
        let forced = AMQPError.connectionClosed(code: 320, text: "CONNECTION_FORCED - broker forced connection closure")
        #expect(connection.connectionLost(forced, now: .now) == .interruptChannels(forced))
    }

    @Test("close while serving closes gracefully; close during recovery stops at once")
    func closing() {
        var open = serving()
        #expect(open.closeRequested() == .closeGracefully)
        #expect(open.closedGracefully() == .finish(.closed))
        var recovering = serving()
        _ = recovering.connectionLost(lost, now: .now)
        _ = recovering.channelsReleased()
        _ = recovering.connectFailed(lost)
        #expect(recovering.closeRequested() == .finish(.closed))
        #expect(recovering.closeRequested() == .finish(.closed))
    }

    @Test("blocked and unblocked: each change is told once, and a new connection starts unblocked")
    func blockedUnblocked() {
        var connection = serving()
        #expect(connection.brokerBlocked(true) == .block)
        #expect(connection.isBlocked)
        #expect(connection.brokerBlocked(true) == .ignore)
        #expect(connection.brokerBlocked(false) == .unblock)
        #expect(connection.brokerBlocked(true) == .block)
        _ = connection.connectionLost(lost, now: .now)
        #expect(!connection.isBlocked)
        #expect(connection.brokerBlocked(false) == .ignore)
        _ = connection.channelsReleased()
        _ = connection.connected()
        _ = connection.restored(now: .now)
        #expect(!connection.isBlocked)
    }

    @Test("polls sleep a quarter of the heartbeat, at least 50 ms; a second without heartbeats", arguments: [
        (0, Int32(1000)), (1, 250), (2, 500), (60, 15_000), (Int.max, Int32.max),
    ] as [(Int, Int32)])
    func pollInterval(heartbeat: Int, expected: Int32) {
        #expect(ConnectionStateMachine.pollInterval(heartbeatSeconds: heartbeat) == expected)
    }

    @Test("a poll that timed out or found the socket readable reads; one woken by jobs reads once a tick")
    func mustRead() {
        #expect(ConnectionStateMachine.mustRead(pollTimedOut: true, socketReadable: false, sinceLastRead: .zero, pollInterval: 500))
        #expect(ConnectionStateMachine.mustRead(pollTimedOut: false, socketReadable: true, sinceLastRead: .zero, pollInterval: 500))
        #expect(!ConnectionStateMachine.mustRead(pollTimedOut: false, socketReadable: false, sinceLastRead: .milliseconds(10), pollInterval: 500))
        #expect(ConnectionStateMachine.mustRead(pollTimedOut: false, socketReadable: false, sinceLastRead: .milliseconds(501), pollInterval: 500))
    }
}

/// Records what a consumer was told.
private final class Told: Sendable {
    private let events = Mutex<[String]>([])
    var all: [String] { events.withLock { $0 } }

    func consumer(_ tag: String, noAck: Bool = false) -> ConsumerState {
        ConsumerState(tag: tag, queue: "q-\(tag)", noAck: noAck, exclusive: false, arguments: [:]) { event in
            let text: String
            switch event {
            case .delivery: text = "delivery"
            case .interrupted: text = "interrupted"
            case .ended(nil): text = "ended"
            case .ended(let error?): text = "ended \(error)"
            }
            self.events.withLock { $0.append("\(tag): \(text)") }
        }
    }
}

private func tell(_ release: ChannelStateMachine<Int>.Release) {
    guard let event = release.consumerEvent else { return }
    for consumer in release.consumers { consumer.handler(event) }
}

@Suite("Channel state machine")
struct ChannelStateMachineTests {
    @Test("a reopened channel gets its prefetch and confirm mode again, and numbers publishes from 1")
    func reopenRestoresSetup() {
        var channel = ChannelStateMachine<Int>()
        #expect(channel.needsOpen)
        channel.opening()
        #expect(channel.opened() == .init(prefetchCount: nil, confirms: false))
        channel.prefetchSet(10)
        channel.confirmsEnabled()
        #expect(channel.published(1, exchange: "", routingKey: "k", mandatory: nil) == nil)
        #expect(channel.published(2, exchange: "", routingKey: "k", mandatory: nil) == nil)
        let release = channel.closedByBroker(.channelClosed(code: 404, text: "NOT_FOUND"))
        #expect(release.failedConfirms == [1, 2])
        #expect(channel.needsOpen)
        channel.opening()
        #expect(channel.opened() == .init(prefetchCount: 10, confirms: true))
        #expect(channel.confirms.nextSequence == 1)
    }

    @Test("without confirm mode a publish's waiter is resumed at once")
    func publishWithoutConfirms() {
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        #expect(channel.published(7, exchange: "", routingKey: "k", mandatory: nil) == 7)
        #expect(channel.confirms.isEmpty)
    }

    @Test("a channel closed by the broker fails pending confirms and ends its consumers with the broker's reason")
    func closedByBroker() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.confirmsEnabled()
        channel.consumerStarted(told.consumer("c1"))
        _ = channel.published(1, exchange: "x", routingKey: "k", mandatory: nil)
        let error = AMQPError.channelClosed(code: 406, text: "PRECONDITION_FAILED")
        let release = channel.closedByBroker(error)
        tell(release)
        #expect(release.error == error)
        #expect(release.failedConfirms == [1])
        #expect(told.all == ["c1: ended \(error)"])
        #expect(channel.state == .closedByBroker(error))
        #expect(channel.consumers.isEmpty)
    }

    @Test("confirms outstanding when the connection is lost fail; consumers are interrupted and kept for recovery")
    func connectionLostWithRecovery() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.confirmsEnabled()
        channel.consumerStarted(told.consumer("c1"))
        for waiter in 1...3 { _ = channel.published(waiter, exchange: "", routingKey: "k", mandatory: nil) }
        _ = channel.confirmed(deliveryTag: 1, multiple: false, ack: true)
        let release = channel.connectionLost(lost, recovering: true)
        tell(release)
        #expect(release.failedConfirms == [2, 3])
        #expect(release.error == lost)
        #expect(told.all == ["c1: interrupted"])
        #expect(channel.consumers.keys.sorted() == ["c1"])
        #expect(channel.state == .closed)
    }

    @Test("without recovery consumers end with the error and are forgotten")
    func connectionLostWithoutRecovery() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.consumerStarted(told.consumer("c1"))
        tell(channel.connectionLost(lost, recovering: false))
        #expect(told.all == ["c1: ended \(lost)"])
        #expect(channel.consumers.isEmpty)
    }

    @Test("closing a connection on request ends consumers quietly; a connection that died ends them with why")
    func connectionFinished() {
        let told = Told()
        var quiet = ChannelStateMachine<Int>()
        quiet.consumerStarted(told.consumer("q"))
        tell(quiet.connectionFinished(.closed))
        var loud = ChannelStateMachine<Int>()
        loud.consumerStarted(told.consumer("l"))
        tell(loud.connectionFinished(lost))
        #expect(told.all == ["q: ended", "l: ended \(lost)"])
    }

    @Test("a consumer refused during restore does not end the others: the recovery decides")
    func closedWhileRestoring() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.consumerStarted(told.consumer("c1"))
        channel.isRestoringConsumers = true
        let release = channel.closedByBroker(.channelClosed(code: 404, text: "NOT_FOUND"))
        tell(release)
        #expect(release.consumers.isEmpty)
        #expect(told.all.isEmpty)
    }

    @Test("after a client cancel, late deliveries of an ack-mode consumer are rejected, of a no-ack one dropped")
    func lateDeliveriesAfterCancel() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.consumerStarted(told.consumer("acked"))
        channel.consumerStarted(told.consumer("auto", noAck: true))
        guard case .consumer = channel.route(deliveryFor: "acked") else {
            Issue.record("a live consumer gets its deliveries")
            return
        }
        #expect(channel.cancelRequested(tag: "acked")?.sendCancel == true)
        #expect(channel.cancelRequested(tag: "auto")?.sendCancel == true)
        #expect(channel.cancelRequested(tag: "auto") == nil)
        guard case .reject = channel.route(deliveryFor: "acked"), case .drop = channel.route(deliveryFor: "auto"),
            case .drop = channel.route(deliveryFor: "unknown")
        else {
            Issue.record("late deliveries routed wrongly")
            return
        }
        channel.cancelFinished(tag: "acked")
        guard case .drop = channel.route(deliveryFor: "acked") else {
            Issue.record("after cancel-ok nothing more is expected")
            return
        }
    }

    @Test("cancelling on a closed channel sends nothing")
    func cancelOnClosedChannel() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.consumerStarted(told.consumer("c"))
        #expect(channel.cancelRequested(tag: "c")?.sendCancel == false)
    }

    @Test("the broker cancelling a consumer (queue deleted) hands it back once")
    func serverCancel() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.consumerStarted(told.consumer("c"))
        #expect(channel.cancelledByBroker(tag: "c")?.tag == "c")
        #expect(channel.cancelledByBroker(tag: "c") == nil)
    }

    @Test("a mandatory publish returned on a confirm channel fails when its ack arrives")
    func returnedOnConfirmChannel() {
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.confirmsEnabled()
        let body = Data("m".utf8)
        _ = channel.published(1, exchange: "x", routingKey: "nowhere", mandatory: .init(exchange: "x", routingKey: "nowhere", body: body))
        let tracked = channel.returned(exchange: "x", routingKey: "nowhere", body: body, code: 312, text: "NO_ROUTE")
        #expect(tracked)
        let settled = channel.confirmed(deliveryTag: 1, multiple: false, ack: true)
        #expect(settled.count == 1)
        guard case .failure(.returned(_, _, 312, _)) = settled.first?.1 else {
            Issue.record("expected the return to fail the publish")
            return
        }
        var plain = ChannelStateMachine<Int>()
        let untracked = plain.returned(exchange: "x", routingKey: "k", body: body, code: 312, text: "NO_ROUTE")
        #expect(!untracked)
    }

    @Test("closing a channel on request fails its confirms with closed and ends consumers quietly")
    func closedByClient() {
        let told = Told()
        var channel = ChannelStateMachine<Int>()
        channel.opening()
        _ = channel.opened()
        channel.confirmsEnabled()
        channel.consumerStarted(told.consumer("c"))
        _ = channel.published(1, exchange: "", routingKey: "k", mandatory: nil)
        let release = channel.closing()
        tell(release)
        #expect(release.error == .closed)
        #expect(release.failedConfirms == [1])
        #expect(told.all == ["c: ended"])
        #expect(channel.state == .closing)
    }
}

private func describe(_ action: RecoveryStateMachine.Action) -> String {
    switch action {
    case .declare(let entry):
        switch entry {
        case .exchange(let exchange): "declare exchange \(exchange.name)"
        case .queue(let queue): "declare queue \(queue.name)"
        case .binding(let binding): "bind \(binding.queue)"
        }
    case .pause(let duration): "pause \(duration)"
    case .skip: "skip"
    case .reopen(let channel): "reopen \(channel)"
    case .startConsumer(let channel, let consumer): "consume \(channel) \(consumer.tag)"
    case .endConsumer(let channel, let consumer, _): "end \(channel) \(consumer.tag)"
    case .done: "done"
    case .abort(_, let channel, let keep): "abort \(channel.map(String.init) ?? "-") keep \(keep.map(\.tag))"
    }
}

private let exchange = TopologyRecord.Entry.exchange(.init(name: "x", type: "topic", durable: true, autoDelete: false, internal: false, arguments: [:]))
private let queue = TopologyRecord.Entry.queue(.init(name: "q", durable: false, exclusive: true, autoDelete: false, arguments: [:]))
private let binding = TopologyRecord.Entry.binding(.init(queue: "q", exchange: "x", routingKey: "#", arguments: [:]))

@Suite("Recovery state machine")
struct RecoveryStateMachineTests {
    @Test("topology is declared again in order, then each channel reopens and its consumers are re-registered")
    func fullRestore() {
        let told = Told()
        var recovery = RecoveryStateMachine(
            entries: [exchange, queue, binding],
            channels: [.init(number: 3, consumers: [told.consumer("b")]), .init(number: 2, consumers: [told.consumer("a1"), told.consumer("a2")])])
        var steps = [describe(recovery.start())]
        steps.append(describe(recovery.declared()))
        steps.append(describe(recovery.declared()))
        steps.append(describe(recovery.declared()))
        steps.append(describe(recovery.channelOpened()))
        steps.append(describe(recovery.consumerStarted()))
        steps.append(describe(recovery.consumerStarted()))
        steps.append(describe(recovery.channelOpened()))
        steps.append(describe(recovery.consumerStarted()))
        #expect(steps == [
            "declare exchange x", "declare queue q", "bind q", "reopen 2", "consume 2 a1", "consume 2 a2", "reopen 3", "consume 3 b", "done",
        ])
    }

    @Test("an exclusive queue still locked by the old connection (405) is tried again every 100 ms, 20 times in all")
    func lockedQueueRetried() {
        var recovery = RecoveryStateMachine(entries: [queue, binding], channels: [])
        _ = recovery.start()
        let locked = AMQPError.channelClosed(code: 405, text: "RESOURCE_LOCKED")
        for _ in 1..<RecoveryStateMachine.lockedRetries {
            #expect(describe(recovery.declareFailed(locked)) == "pause 0.1 seconds")
            #expect(describe(recovery.pauseEnded()) == "declare queue q")
        }
        guard case .skip(.queue, locked) = recovery.declareFailed(locked) else {
            Issue.record("after 20 tries the entry is skipped")
            return
        }
        #expect(describe(recovery.skipped()) == "bind q")
    }

    @Test("an entry the broker refuses otherwise is skipped at once, the rest still restored")
    func refusedEntrySkipped() {
        var recovery = RecoveryStateMachine(entries: [exchange, queue], channels: [])
        _ = recovery.start()
        #expect(describe(recovery.declareFailed(.channelClosed(code: 406, text: "PRECONDITION_FAILED"))) == "skip")
        #expect(describe(recovery.skipped()) == "declare queue q")
        #expect(describe(recovery.declared()) == "done")
    }

    @Test("after a reconnect a consumer whose queue is gone ends; its channel reopens and the others are registered again")
    func partialConsumerRestore() {
        let told = Told()
        var recovery = RecoveryStateMachine(entries: [], channels: [.init(number: 2, consumers: [told.consumer("a"), told.consumer("b"), told.consumer("c")])])
        var steps = [describe(recovery.start())]
        steps.append(describe(recovery.channelOpened()))
        steps.append(describe(recovery.consumerStarted()))
        steps.append(describe(recovery.consumerFailed(.channelClosed(code: 404, text: "NOT_FOUND"))))
        steps.append(describe(recovery.consumerEnded()))
        steps.append(describe(recovery.channelOpened()))
        steps.append(describe(recovery.consumerStarted()))
        steps.append(describe(recovery.consumerStarted()))
        #expect(steps == ["reopen 2", "consume 2 a", "consume 2 b", "end 2 b", "reopen 2", "consume 2 a", "consume 2 c", "done"])
    }

    @Test("the connection failing again mid-restore keeps the channel's consumers for the next attempt")
    func connectionFailsAgain() {
        let told = Told()
        var recovery = RecoveryStateMachine(entries: [exchange], channels: [.init(number: 2, consumers: [told.consumer("a"), told.consumer("b")])])
        _ = recovery.start()
        _ = recovery.declared()
        _ = recovery.channelOpened()
        #expect(describe(recovery.consumerFailed(lost)) == "abort 2 keep [\"a\", \"b\"]")
        var early = RecoveryStateMachine(entries: [exchange], channels: [.init(number: 2, consumers: [told.consumer("a")])])
        _ = early.start()
        #expect(describe(early.declareFailed(.timedOut(operation: "declaring"))) == "abort - keep []")
        #expect(told.all.isEmpty)
    }
}
