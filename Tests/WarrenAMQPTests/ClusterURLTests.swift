import Testing
@testable import WarrenAMQP

@Suite("Cluster URLs and node rotation")
struct ClusterURLTests {
    typealias Endpoint = AMQPConfiguration.Endpoint

    @Test("several hosts, comma-separated: each with its port, or the scheme's default; IPv6 in brackets")
    func severalHosts() throws {
        let plain = try AMQPConfiguration(url: "amqp://u:p%2Cq@h1:5681,h2,[::1]:5683/v?heartbeat=5")
        #expect(plain.endpoints == [Endpoint(host: "h1", port: 5681), Endpoint(host: "h2", port: 5672), Endpoint(host: "::1", port: 5683)])
        #expect(plain.host == "h1")
        #expect(plain.port == 5681)
        #expect(plain.password == "p,q")  // a comma in the password is no host separator
        #expect(plain.vhost == "v")
        #expect(plain.endpoints.map(\.description) == ["h1:5681", "h2:5672", "[::1]:5683"])
        let tls = try AMQPConfiguration(url: "amqps://a,b:6000")
        #expect(tls.endpoints == [Endpoint(host: "a", port: 5671), Endpoint(host: "b", port: 6000)])
        let one = try AMQPConfiguration(url: "amqp://guest:guest@localhost:5672/")
        #expect(one.endpoints == [Endpoint(host: "localhost", port: 5672)])
        #expect(one.additionalEndpoints.isEmpty)
        let bare = try AMQPConfiguration(url: "amqp://")
        #expect(bare.endpoints == [Endpoint(host: "localhost", port: 5672)])
        let portOnly = try AMQPConfiguration(url: "amqp://:5690")
        #expect(portOnly.endpoints == [Endpoint(host: "localhost", port: 5690)])
    }

    @Test("hostile host lists are refused with a reason, never a trap", arguments: [
        ("amqp://h1,,h2/", "host 2 of 3"),
        ("amqp://h1,/", "host 2 of 2 ('') is empty"),
        ("amqp://,h1", "host 1 of 2 ('') is empty"),
        ("amqp://h1:5672,", "is empty"),
        ("amqp://h1:70000,h2", "port '70000'"),
        ("amqp://h1,h2:0", "port '0'"),
        ("amqp://h1:-1", "port '-1'"),
        ("amqp://h1:+5672", "port '+5672'"),
        ("amqp://h1:99999999999999999999999", "port"),
        ("amqp://h1: 5672", "port"),
        ("amqp://h1,h2:abc", "port 'abc'"),
        ("amqp://::1:5672", "brackets"),
        ("amqp://h1:5672:5673", "brackets"),
        ("amqp://[::1:5672,h2", "unterminated IPv6"),
        ("amqp://h1,[::1]x", "unexpected text after the IPv6"),
        ("amqp://[]:5672", "empty IPv6"),
        ("amqp://h1,h%2C2", "comma"),
        ("amqp://h1,h%002", "percent-encoding"),
        ("amqp://h1,h%zz", "percent-encoding"),
        ("amqp://" + Array(repeating: "h", count: 65).joined(separator: ","), "at most 64"),
        ("amqp://" + String(repeating: ",", count: 100_000), "at most 64"),
    ])
    func hostileLists(url: String, mentions: String) {
        #expect {
            _ = try AMQPConfiguration(url: url)
        } throws: { error in
            guard case .invalidURL(let given, let reason) = error as? AMQPError else { return false }
            return given == url && reason.contains(mentions)
        }
    }

    @Test("every host of the list is checked before librabbitmq sees it")
    func checkedEndpoints() throws {
        var configuration = try AMQPConfiguration(url: "amqp://h1,h2")
        configuration.additionalEndpoints[0].port = 70_000
        #expect(throws: AMQPError.self) { try WireLimits.checkConfiguration(configuration) }
        configuration.additionalEndpoints[0] = Endpoint(host: "h\u{0}2", port: 5672)
        #expect(throws: AMQPError.self) { try WireLimits.checkConfiguration(configuration) }
    }

    @Test("the rotation tries every node once per round, from its start, and wraps")
    func rotation() {
        let nodes = [Endpoint(host: "a", port: 1), Endpoint(host: "b", port: 2), Endpoint(host: "c", port: 3)]
        var rotation = NodeRotation(endpoints: nodes, start: 4)
        #expect(rotation.current == nodes[1])
        #expect(rotation.round == [nodes[1], nodes[2], nodes[0]])
        rotation.advance()
        #expect(rotation.current == nodes[2])
        rotation.advance()
        #expect(rotation.current == nodes[0])
        #expect(NodeRotation(endpoints: nodes, start: -1).current == nodes[2])
        var single = NodeRotation(endpoints: [nodes[0]], start: 0)
        single.advance()
        #expect(single.current == nodes[0])
    }

    @Test("the starting node is random: over many connections every node is someone's first")
    func randomStart() throws {
        let configuration = try AMQPConfiguration(url: "amqp://a,b,c")
        var generator = SplitMix(seed: 7)
        var firsts = Set<String>()
        for _ in 0..<60 { firsts.insert(NodeRotation(configuration: configuration, using: &generator).current.host) }
        #expect(firsts == ["a", "b", "c"])
    }

    @Test("backoff between rounds: full jitter under a cap that doubles up to the maximum", arguments: [
        (0, 0.5, Duration.milliseconds(50)),
        (1, 0.5, .milliseconds(100)),
        (3, 1.0, .milliseconds(800)),
        (6, 0.999, .milliseconds(4995)),
        (10, 1.0, .seconds(5)),
        (1_000_000, 0.5, .milliseconds(2500)),
        (Int.max, 0.1, .milliseconds(500)),
        (-3, 1.0, .milliseconds(100)),
        (2, 0.0, .milliseconds(1)),
        (2, -4.0, .milliseconds(1)),
        (2, Double.nan, .milliseconds(1)),
        (2, Double.infinity, .milliseconds(1)),
        (2, 7.0, .milliseconds(400)),
    ])
    func backoff(round: Int, fraction: Double, expected: Duration) {
        let pause = NodeRotation.backoff(afterRound: round, initial: .milliseconds(100), maximum: .seconds(5), fraction: fraction)
        #expect(abs((pause - expected) / .microseconds(1)) < 1, "\(pause)")
    }
}

/// A seeded generator, so that the random start is tested without flakiness.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Reconnect flapping")
struct FlapTests {
    @Test("a connection lost within 2 s of its recovery starts the next recovery one round later; a lasting one starts again at 0", arguments: [
        (0, nil, 0),
        (0, Duration.milliseconds(300), 1),
        (3, .milliseconds(1999), 4),
        (3, .seconds(2), 0),
        (5, .seconds(600), 0),
        (62, .milliseconds(1), 62),
    ] as [(Int, Duration?, Int)])
    func startingRound(previous: Int, upFor: Duration?, expected: Int) {
        #expect(NodeRotation.startingRound(previous: previous, upFor: upFor) == expected)
    }
}
