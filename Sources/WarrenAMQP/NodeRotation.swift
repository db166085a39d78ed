/// Which broker node a connection tries next, and how long it pauses between rounds: the pure
/// rules of connecting and recovery that `ConnectionStateMachine` applies, testable without a socket.
///
/// The nodes are tried in the URL's order, starting from one chosen at random per connection:
/// the processes of a system then spread their connections over the cluster (rather than all
/// sitting on the first node and all losing it at once), and each round still tries every node
/// exactly once. After a lost connection, recovery starts at the node after the one lost, which
/// therefore comes last.
struct NodeRotation: Sendable, Equatable {
    let endpoints: [AMQPConfiguration.Endpoint]
    private(set) var index: Int

    /// `start` is reduced modulo the number of nodes; `endpoints` must not be empty.
    init(endpoints: [AMQPConfiguration.Endpoint], start: Int) {
        precondition(!endpoints.isEmpty, "a configuration always has a node")
        self.endpoints = endpoints
        self.index = (start % endpoints.count + endpoints.count) % endpoints.count
    }

    /// Starts at a random node (see the type's comment).
    init<Generator: RandomNumberGenerator>(configuration: AMQPConfiguration, using generator: inout Generator) {
        let endpoints = configuration.endpoints
        self.init(endpoints: endpoints, start: Int.random(in: 0..<endpoints.count, using: &generator))
    }

    /// The node to try now.
    var current: AMQPConfiguration.Endpoint { endpoints[index] }

    /// Moves to the next node, after the last back to the first.
    mutating func advance() {
        index = (index + 1) % endpoints.count
    }

    /// One round: every node once, from the current one on.
    var round: [AMQPConfiguration.Endpoint] {
        Array(endpoints[index...] + endpoints[..<index])
    }

    /// The round a recovery starts at: 0 normally, but one more than the last recovery's when
    /// the connection it made was lost again within `flapWindow` — a node that accepts the
    /// connection and then closes it (541 INTERNAL_ERROR while a quorum queue's leader moves),
    /// which would otherwise be retried at once, again and again, each time handing back the
    /// messages in hand (and counting against their `x-delivery-limit`).
    static func startingRound(previous: Int, upFor: Duration?, flapWindow: Duration = .seconds(2)) -> Int {
        guard let upFor, upFor < flapWindow else { return 0 }
        return min(previous + 1, 62)
    }

    /// The pause after `round` failed rounds (0 for the first), "full jitter": `fraction`
    /// (uniform in 0..<1) of a cap that doubles from `initial` and stops at `maximum`. At least
    /// a millisecond, so that a round of refusals never spins.
    static func backoff(afterRound round: Int, initial: Duration, maximum: Duration, fraction: Double) -> Duration {
        var cap = initial
        for _ in 0..<min(max(round, 0), 62) where cap < maximum { cap *= 2 }
        cap = min(cap, maximum)
        let share = fraction.isFinite ? min(max(fraction, 0), 1) : 0
        return max(cap * share, .milliseconds(1))
    }
}
