import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

/// Strings handed to librabbitmq: what it takes by length is kept exactly, NUL and all; what it
/// takes as a C string (the login, the host, certificate paths) is refused when it holds NUL.
@Suite("Strings handed to librabbitmq")
struct CStringTests {
    static let nulValues = ["\u{0}", "\u{0}start", "mid\u{0}dle", "end\u{0}"]

    @Test("properties and header keys and values with NUL arrive exactly as sent", arguments: nulValues)
    func propertiesKeepNUL(value: String) async throws {
        let queue = Broker.unique("nul")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            let properties = AMQPProperties(
                contentType: "application/json", headers: ["key\(value)": .string("value\(value)"), "plain": .string(value)],
                correlationID: "corr\(value)", replyTo: "reply\(value)", messageID: "id\(value)", type: "type\(value)", appID: value)
            try await channel.publish(Data("body\(value)".utf8), routingKey: queue, properties: properties)
            let delivery = try #require(try await channel.consume(queue: queue).first(1).first)
            #expect(delivery.properties == properties)
            #expect(delivery.body == Data("body\(value)".utf8))
            try delivery.ack()
        }
    }

    @Test("a short string over 255 bytes is refused before anything is sent; the channel keeps working")
    func overLong() async throws {
        let queue = Broker.unique("long")
        try await withChannel(queues: [queue]) { _, channel in
            try await channel.declareQueue(queue, durable: false)
            let long = String(repeating: "é", count: 128)  // 256 bytes
            for properties in [
                AMQPProperties(correlationID: long), AMQPProperties(replyTo: long), AMQPProperties(type: long),
                AMQPProperties(headers: [long: "v"]),
            ] {
                await #expect(throws: AMQPError.self) { try await channel.publish(Data(), routingKey: queue, properties: properties) }
            }
            await #expect(throws: AMQPError.self) { try await channel.publish(Data(), routingKey: long) }
            try await channel.publish(Data("after".utf8), routingKey: queue)
            #expect(try await channel.consume(queue: queue).first(1).first?.body == Data("after".utf8))
        }
    }

    @Test("%00 in any part of an AMQP URL is refused, naming the part", arguments: [
        ("amqp://us%00er:pw@localhost/", "user name"),
        ("amqp://user:p%00w@localhost/", "password"),
        ("amqp://user:pw@local%00host/", "host"),
        ("amqp://user:pw@localhost/v%00h", "vhost"),
        ("amqp://localhost/?connection_name=a%00b", "query item"),
        ("amqps://localhost/?cacertfile=/etc/ca%00.pem", "query item"),
        ("amqp://localhost/?heartbeat=99999999999", "heartbeat"),
        ("amqp://localhost/?frame_max=99999999999", "frame_max"),
    ])
    func urls(url: String, part: String) {
        #expect {
            _ = try AMQPConfiguration(url: url)
        } throws: { error in
            guard case .invalidURL(_, let reason) = error as? AMQPError else { return false }
            return reason.contains(part)
        }
    }

    static func withNUL(_ change: (inout AMQPConfiguration) -> Void) throws -> AMQPConfiguration {
        var configuration = try Broker.configuration()
        change(&configuration)
        return configuration
    }

    @Test("a configuration librabbitmq would cut or mis-frame is refused before connecting")
    func configurations() async throws {
        let cases: [(AMQPConfiguration, String)] = [
            (try Self.withNUL { $0.password += "\u{0}anything" }, "password"),
            (try Self.withNUL { $0.user = "gu\u{0}est" }, "user name"),
            (try Self.withNUL { $0.vhost = "/\u{0}" }, "vhost"),
            (try Self.withNUL { $0.host = "localhost\u{0}.evil" }, "host"),
            (try Self.withNUL { $0.connectionName = "name\u{0}" }, "connection name"),
            (try Self.withNUL { $0.vhost = String(repeating: "v", count: 256) }, "vhost"),
            (try Self.withNUL { $0.frameMax = Int(Int32.max) + 1 }, "frame_max"),
            (try Self.withNUL { $0.heartbeat = .seconds(70_000) }, "heartbeat"),
        ]
        for (configuration, part) in cases {
            let started = ContinuousClock.now
            await #expect {
                _ = try await AMQPConnection.connect(configuration)
            } throws: { error in
                guard case .invalidArgument(let detail) = error as? AMQPError else { return false }
                return detail.contains(part)
            }
            #expect(ContinuousClock.now - started < .seconds(1), "refused at once, not after a connection attempt")
        }
    }
}
