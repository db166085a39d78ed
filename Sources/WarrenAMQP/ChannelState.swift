/// A channel as the I/O thread holds it: the handle tasks know it by, its rules
/// (`ChannelStateMachine`) and who hears of returned messages.
final class ChannelState {
    let handle: ChannelHandle
    var machine = ChannelStateMachine<OptionalConfirmWaiter>()
    /// Told about every message the broker returns on this channel (mandatory, unroutable).
    var returnHandler: (@Sendable (AMQPReturnedMessage) -> Void)?
    /// Acks asked for during the current batch of jobs, sent at its end (`IOLoop.flushAcks`).
    var acks = AckCoalescer()

    init(handle: ChannelHandle) { self.handle = handle }
}
