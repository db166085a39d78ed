/// The order and the rules of restoring a recovered connection, as a value: first the recorded
/// topology is declared again (on the control channel), then every other channel is reopened, in
/// number order, and its consumers re-registered, in tag order. The I/O thread (`IOLoop`) runs
/// each `Action` and reports how it went.
///
/// - An exclusive queue of the old connection may linger for a moment on the broker (405
///   RESOURCE_LOCKED): its declaration is tried again every 100 ms, 20 times in all; any other
///   channel error skips the entry (logged), since one bad entry must not keep the rest down.
/// - A consumer the broker refuses (its queue is gone) ends with that error; refusing closes the
///   channel, so it is reopened and the channel's other consumers are registered again.
/// - Any other failure is the connection failing again: the restore stops, the channel being
///   restored keeps every consumer for the next attempt (`abort`).
struct RecoveryStateMachine {
    /// A channel to restore: its number and its consumers (sorted by tag).
    struct Channel {
        let number: UInt16
        var consumers: [ConsumerState]
    }

    enum Action {
        /// Declare this entry on the control channel (opening it first if need be); report
        /// `declared()` or `declareFailed(_:)`.
        case declare(TopologyRecord.Entry)
        /// Wait before the next try (a close request may end it early); report `pauseEnded()`.
        case pause(Duration)
        /// Log that this entry could not be restored; report `skipped()`.
        case skip(TopologyRecord.Entry, AMQPError)
        /// Reopen the channel (with its prefetch and confirm mode); report `channelOpened()` or
        /// `failed(_:)`.
        case reopen(channel: UInt16)
        /// `basic.consume` again with the consumer's tag; report `consumerStarted()` or
        /// `consumerFailed(_:)`.
        case startConsumer(channel: UInt16, ConsumerState)
        /// Tell the consumer it ended with this error (it will not come back); report
        /// `consumerEnded()`.
        case endConsumer(channel: UInt16, ConsumerState, AMQPError)
        /// Everything is restored.
        case done
        /// The connection failed again: keep these consumers on the channel and fail the attempt.
        case abort(AMQPError, channel: UInt16?, keep: [ConsumerState])
    }

    private enum Step {
        case topology(index: Int, attempt: Int)
        case channel(index: Int, consumer: Int)
        case done
    }

    static let lockedRetries = 20
    static let lockedPause = Duration.milliseconds(100)

    private let entries: [TopologyRecord.Entry]
    private var channels: [Channel]
    private var step: Step = .topology(index: 0, attempt: 1)

    init(entries: [TopologyRecord.Entry], channels: [Channel]) {
        self.entries = entries
        self.channels = channels.sorted { $0.number < $1.number }
    }

    mutating func start() -> Action {
        step = .topology(index: 0, attempt: 1)
        return next()
    }

    // MARK: - Topology

    mutating func declared() -> Action {
        guard case .topology(let index, _) = step else { preconditionFailure("declared() out of order") }
        step = .topology(index: index + 1, attempt: 1)
        return next()
    }

    mutating func declareFailed(_ error: AMQPError) -> Action {
        guard case .topology(let index, let attempt) = step else { preconditionFailure("declareFailed(_:) out of order") }
        guard case .channelClosed(let code, _) = error else { return abort(error) }
        if code == 405, attempt < Self.lockedRetries {
            step = .topology(index: index, attempt: attempt + 1)
            return .pause(Self.lockedPause)
        }
        return .skip(entries[index], error)
    }

    mutating func pauseEnded() -> Action { next() }

    mutating func skipped() -> Action { declared() }

    // MARK: - Channels and consumers

    mutating func channelOpened() -> Action {
        guard case .channel(let index, _) = step else { preconditionFailure("channelOpened() out of order") }
        step = .channel(index: index, consumer: 0)
        return nextConsumer(index: index, consumer: 0)
    }

    mutating func consumerStarted() -> Action {
        guard case .channel(let index, let consumer) = step else { preconditionFailure("consumerStarted() out of order") }
        step = .channel(index: index, consumer: consumer + 1)
        return nextConsumer(index: index, consumer: consumer + 1)
    }

    /// `basic.consume` failed: a channel error refuses this consumer, anything else is the
    /// connection failing again.
    mutating func consumerFailed(_ error: AMQPError) -> Action {
        guard case .channel(let index, let consumer) = step else { preconditionFailure("consumerFailed(_:) out of order") }
        guard case .channelClosed = error else { return abort(error) }
        let refused = channels[index].consumers.remove(at: consumer)
        return .endConsumer(channel: channels[index].number, refused, error)
    }

    /// The refused consumer was told: reopen the channel and register the others again.
    mutating func consumerEnded() -> Action {
        guard case .channel(let index, _) = step else { preconditionFailure("consumerEnded() out of order") }
        step = .channel(index: index, consumer: -1)
        return .reopen(channel: channels[index].number)
    }

    /// Reopening a channel failed, or the control channel could not be opened.
    mutating func failed(_ error: AMQPError) -> Action { abort(error) }

    // MARK: - Helpers

    private mutating func next() -> Action {
        switch step {
        case .topology(let index, _) where index < entries.count:
            return .declare(entries[index])
        case .topology:
            step = .channel(index: 0, consumer: -1)
            return next()
        case .channel(let index, _) where index < channels.count:
            return .reopen(channel: channels[index].number)
        case .channel, .done:
            step = .done
            return .done
        }
    }

    private mutating func nextConsumer(index: Int, consumer: Int) -> Action {
        guard consumer < channels[index].consumers.count else {
            step = .channel(index: index + 1, consumer: -1)
            return next()
        }
        return .startConsumer(channel: channels[index].number, channels[index].consumers[consumer])
    }

    private mutating func abort(_ error: AMQPError) -> Action {
        defer { step = .done }
        guard case .channel(let index, _) = step else { return .abort(error, channel: nil, keep: []) }
        return .abort(error, channel: channels[index].number, keep: channels[index].consumers)
    }
}
