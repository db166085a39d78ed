import Foundation
import Testing
@testable import WarrenAMQP

@Suite("AMQP URLs")
struct URLTests {
    @Test("a full URL sets every part, percent-decoded")
    func fullURL() throws {
        let configuration = try AMQPConfiguration(url: "amqp://us%40er:p%3Ass@broker.example:5673/my%2Fvhost?heartbeat=3&frame_max=8192&connection_name=orders%201")
        #expect(configuration.user == "us@er")
        #expect(configuration.password == "p:ss")
        #expect(configuration.host == "broker.example")
        #expect(configuration.port == 5673)
        #expect(configuration.vhost == "my/vhost")
        #expect(configuration.heartbeat == .seconds(3))
        #expect(configuration.frameMax == 8192)
        #expect(configuration.connectionName == "orders 1")
        #expect(configuration.tls == nil)
    }

    @Test("defaults: guest, port 5672, vhost /; amqps uses 5671 and verifies the peer")
    func defaults() throws {
        let plain = try AMQPConfiguration(url: "amqp://localhost")
        #expect(plain.user == "guest")
        #expect(plain.port == 5672)
        #expect(plain.vhost == "/")
        let slash = try AMQPConfiguration(url: "amqp://localhost/%2F")
        #expect(slash.vhost == "/")
        let tls = try AMQPConfiguration(url: "amqps://[::1]/?cacertfile=/etc/ca.pem")
        #expect(tls.port == 5671)
        #expect(tls.host == "::1")
        #expect(tls.tls?.verifyPeer == true)
        #expect(tls.tls?.caCertificatePath == "/etc/ca.pem")
    }

    @Test("bad URLs say what is wrong", arguments: [
        ("http://localhost", "scheme"),
        ("amqp://localhost:99999", "port"),
        ("amqp://localhost:abc", "port"),
        ("amqp://localhost/a/b", "vhost"),
        ("amqp://us%zzer@localhost", "user"),
        ("amqp://localhost?heartbeat=-1", "heartbeat"),
        ("amqp://localhost?colour=blue", "unknown query parameter"),
    ])
    func badURLs(url: String, mentions: String) {
        #expect {
            _ = try AMQPConfiguration(url: url)
        } throws: { error in
            guard case .invalidURL(let given, let reason) = error as? AMQPError else { return false }
            return given == url && reason.contains(mentions)
        }
    }
}

@Suite("Confirm tracking")
struct ConfirmTrackerTests {
    typealias Outcome = Result<Void, AMQPError>

    private func isSuccess(_ outcome: Outcome) -> Bool {
        if case .success = outcome { return true }
        return false
    }

    @Test("a multiple ack resolves every publish up to its tag, in order")
    func multipleAck() {
        var tracker = ConfirmTracker<Int>()
        for waiter in 1...5 { tracker.published(waiter, exchange: "", routingKey: "q", mandatory: nil) }
        let resolved = tracker.confirmed(deliveryTag: 3, multiple: true, ack: true)
        #expect(resolved.map(\.0) == [1, 2, 3])
        #expect(resolved.allSatisfy { isSuccess($0.1) })
        let single = tracker.confirmed(deliveryTag: 5, multiple: false, ack: true)
        #expect(single.map(\.0) == [5])
        #expect(tracker.failAll() == [4])
    }

    @Test("a nack fails the publish with its exchange and routing key")
    func nack() {
        var tracker = ConfirmTracker<Int>()
        tracker.published(1, exchange: "x", routingKey: "k", mandatory: nil)
        let resolved = tracker.confirmed(deliveryTag: 1, multiple: false, ack: false)
        guard case .failure(let error) = resolved.first?.1 else {
            Issue.record("expected a failure")
            return
        }
        #expect(error == .nacked(exchange: "x", routingKey: "k"))
    }

    @Test("a return is matched to the publish with the same body, even when an earlier one is still pending")
    func returnMatchedByContent() {
        var tracker = ConfirmTracker<Int>()
        let routed = Data("routed".utf8)
        let lost = Data("lost".utf8)
        tracker.published(1, exchange: "x", routingKey: "k", mandatory: .init(exchange: "x", routingKey: "k", body: routed))
        tracker.published(2, exchange: "x", routingKey: "k", mandatory: .init(exchange: "x", routingKey: "k", body: lost))
        tracker.returned(exchange: "x", routingKey: "k", body: lost, code: 312, text: "NO_ROUTE")
        let resolved = tracker.confirmed(deliveryTag: 2, multiple: true, ack: true)
        #expect(resolved.count == 2)
        #expect(isSuccess(resolved[0].1))
        #expect(!isSuccess(resolved[1].1))
    }
}
