import Synchronization

/// What a task outside the I/O thread may know about a channel: its number and the epoch that
/// changes whenever the channel closes or reopens, so that deliveries from an earlier epoch are
/// never acked on the new one.
final class ChannelHandle: Sendable {
    let number: UInt16
    let jobs: JobQueue
    /// For checking that a message's properties fit in one frame before it is sent.
    let frameMax: Int
    private let epochValue = Atomic<UInt64>(0)
    private let confirmValue = Atomic<Bool>(false)

    init(number: UInt16, jobs: JobQueue, frameMax: Int) {
        self.number = number
        self.jobs = jobs
        self.frameMax = frameMax
    }

    var epoch: UInt64 { epochValue.load(ordering: .acquiring) }

    /// Called on the I/O thread whenever the channel closes or opens.
    func advanceEpoch() { epochValue.add(1, ordering: .releasing) }

    /// Whether publishes wait for a broker confirm; without, they need not wait at all.
    var confirmMode: Bool {
        get { confirmValue.load(ordering: .acquiring) }
        set { confirmValue.store(newValue, ordering: .releasing) }
    }
}
