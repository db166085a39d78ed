import Testing
@testable import WarrenAMQP

// The ack coalescing rule without a socket. The broker's side is modelled by
// `BrokerAcks`: `basic.ack(multiple: true)` settles every unacknowledged tag up to its own; a
// single ack of a tag not unacknowledged is the channel error RabbitMQ raises.

private typealias Ack = AckCoalescer.Ack

/// The broker's view of one channel: what it still holds for the consumer.
private struct BrokerAcks {
    var unacknowledged: Set<UInt64> = []
    var errors = 0

    mutating func apply(_ acks: [Ack]) -> Set<UInt64> {
        var settled: Set<UInt64> = []
        for ack in acks {
            if ack.multiple {
                let covered = unacknowledged.filter { $0 <= ack.deliveryTag }
                if !covered.contains(ack.deliveryTag) { errors += 1 }
                settled.formUnion(covered)
                unacknowledged.subtract(covered)
            } else if unacknowledged.remove(ack.deliveryTag) != nil {
                settled.insert(ack.deliveryTag)
            } else {
                errors += 1
            }
        }
        return settled
    }
}

@Suite("Ack coalescing")
struct AckCoalescerTests {
    @Test("acks of deliveries in a row leave as one multiple ack")
    func inOrder() {
        var acks = AckCoalescer()
        for tag in UInt64(1)...5 { acks.delivered(tag) }
        for tag in UInt64(1)...5 { acks.ackRequested(tag) }
        #expect(acks.flush() == [Ack(deliveryTag: 5, multiple: true)])
        #expect(acks.unsettled.isEmpty)
        #expect(acks.flush().isEmpty)
    }

    @Test("one ack is a single ack, not a multiple one")
    func one() {
        var acks = AckCoalescer()
        acks.delivered(1)
        acks.delivered(2)
        acks.ackRequested(1)
        #expect(acks.flush() == [Ack(deliveryTag: 1, multiple: false)])
        #expect(acks.unsettled == [2])
    }

    @Test("a delivery still held keeps every ack above it single; those below it coalesce")
    func heldBelow() {
        var acks = AckCoalescer()
        for tag in UInt64(1)...6 { acks.delivered(tag) }
        for tag: UInt64 in [6, 1, 2, 4, 5] { acks.ackRequested(tag) }  // 3 is still being handled
        #expect(
            acks.flush() == [
                Ack(deliveryTag: 2, multiple: true), Ack(deliveryTag: 4, multiple: false), Ack(deliveryTag: 5, multiple: false),
                Ack(deliveryTag: 6, multiple: false),
            ])
        #expect(acks.unsettled == [3])
        acks.ackRequested(3)
        #expect(acks.flush() == [Ack(deliveryTag: 3, multiple: false)])
    }

    @Test("a delivery nobody will ack (a consumer unknown) keeps multiple acks below it for good")
    func neverAcked() {
        var acks = AckCoalescer()
        acks.delivered(1)  // dropped: perhaps unacknowledged at the broker
        for tag in UInt64(2)...4 { acks.delivered(tag) }
        for tag in UInt64(2)...4 { acks.ackRequested(tag) }
        #expect(acks.flush().allSatisfy { !$0.multiple })
        #expect(acks.unsettled == [1])
    }

    @Test("a nack, a reject or a caller's multiple ack settles what it names")
    func settledByOthers() {
        var acks = AckCoalescer()
        for tag in UInt64(1)...5 { acks.delivered(tag) }
        acks.settled(2, multiple: false)
        #expect(acks.unsettled == [1, 3, 4, 5])
        acks.settled(4, multiple: true)
        #expect(acks.unsettled == [5])
    }

    @Test("an ack twice, or of a tag never delivered, goes as a single ack, as it would have")
    func unknownTags() {
        var acks = AckCoalescer()
        acks.delivered(1)
        acks.delivered(2)
        acks.ackRequested(1)
        acks.ackRequested(1)
        acks.ackRequested(9)
        #expect(acks.flush() == [Ack(deliveryTag: 1, multiple: false), Ack(deliveryTag: 9, multiple: false)])
        #expect(acks.unsettled == [2])
    }

    @Test("a channel opened again starts over")
    func reset() {
        var acks = AckCoalescer()
        acks.delivered(7)
        acks.ackRequested(7)
        acks.reset()
        #expect(acks.unsettled.isEmpty && !acks.hasRequests)
    }

    @Test("2,000 random runs: the broker settles exactly the deliveries asked for, never one still held")
    func randomRuns() {
        var random = SplitMix(seed: 17)  // ClusterURLTests.swift: seeded, so a failing run replays
        for _ in 0..<2_000 {
            var acks = AckCoalescer()
            var broker = BrokerAcks()
            var nextTag: UInt64 = 1
            var held: [UInt64] = []
            var settledByCoalescer: Set<UInt64> = []
            var askedFor: Set<UInt64> = []
            for _ in 0..<Int(random.next() % 40) {
                switch random.next() % 4 {
                case 0, 1:  // a delivery arrives
                    acks.delivered(nextTag)
                    broker.unacknowledged.insert(nextTag)
                    held.append(nextTag)
                    nextTag += 1
                case 2:  // a handler finishes, in any order
                    guard !held.isEmpty else { continue }
                    let tag = held.remove(at: Int(random.next() % UInt64(held.count)))
                    acks.ackRequested(tag)
                    askedFor.insert(tag)
                default:  // the batch of jobs ends
                    settledByCoalescer.formUnion(broker.apply(acks.flush()))
                    #expect(settledByCoalescer == askedFor)
                    #expect(Set(held).isDisjoint(with: settledByCoalescer))
                }
            }
            settledByCoalescer.formUnion(broker.apply(acks.flush()))
            #expect(settledByCoalescer == askedFor)
            #expect(broker.unacknowledged == Set(held))
            #expect(broker.errors == 0)
        }
    }
}

