import Foundation
import Testing
@testable import Warren
import WarrenAMQP
import WarrenTestSupport

/// The RPC client keeps deadlines with no timer: `run()` sleeps until the earliest deadline or
/// probe and is woken only by a call due earlier.
@Suite("RPC client deadlines", .timeLimit(.minutes(2)))
struct RPCClientDeadlineTests {
    /// A queue that exists but that nobody consumes: no reply ever comes. The probe is set far
    /// beyond the deadlines, so only the deadline can end a call.
    private func withSilentQueue(
        name: String = #function, _ body: (RPCClient, String) async throws -> Void
    ) async throws {
        let connection = try await Broker.connect(name: name)
        let service = "t\(UUID().uuidString.prefix(8).lowercased())"
        let channel = try await connection.openChannel()
        try await channel.declareQueue("\(service).rpc", durable: false)
        let client = try await RPCClient.start(connection: connection, configuration: .init(probeAfter: .seconds(60)))
        async let _ = client.run()
        let result: Result<Void, any Error>
        do {
            result = .success(try await body(client, service))
        } catch {
            result = .failure(error)
        }
        await client.close()
        _ = try? await channel.deleteQueue("\(service).rpc")
        await channel.close()
        await connection.close()
        try result.get()
    }

    @Test("a call nobody answers fails with timeout at its deadline, not before and not much after")
    func timesOutAtDeadline() async throws {
        try await withSilentQueue { client, service in
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.call("\(service).get", body: Data("{}".utf8), timeout: .milliseconds(400))
            } throws: { error in
                (error as? ServiceError)?.code == .timeout && (error as? ServiceError)?.message.contains("before the deadline") == true
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(400))
            // The old 100 Hz timer was at most 10 ms late; a loaded test machine gets slack.
            #expect(elapsed < .milliseconds(1500))
        }
    }

    @Test("a call due earlier than the one the client sleeps until wakes it")
    func earlierDeadlineWakes() async throws {
        try await withSilentQueue { client, service in
            // The client now sleeps until this call's 30 s deadline.
            async let long: Result<RPCClient.Reply, ServiceError> = {
                do throws(ServiceError) {
                    return .success(try await client.call("\(service).get", body: Data("{}".utf8), timeout: .seconds(30)))
                } catch {
                    return .failure(error)
                }
            }()
            try await Task.sleep(for: .milliseconds(200))
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.call("\(service).get", body: Data("{}".utf8), timeout: .milliseconds(300))
            } throws: { error in
                (error as? ServiceError)?.code == .timeout
            }
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(300))
            #expect(elapsed < .milliseconds(1500))
            // Closing ends the long call too: sent, outcome unknown.
            await client.close()
            let longOutcome = await long
            #expect(throws: ServiceError.self) { try longOutcome.get() }
        }
    }

    @Test("after close a call fails at once as unavailable: nothing would keep its deadline")
    func callAfterCloseIsRefused() async throws {
        try await withSilentQueue { client, service in
            await client.close()
            let started = ContinuousClock.now
            await #expect {
                _ = try await client.call("\(service).get", body: Data("{}".utf8), timeout: .seconds(5))
            } throws: { error in
                (error as? ServiceError)?.code == .unavailable
            }
            #expect(ContinuousClock.now - started < .seconds(1))
        }
    }

    @Test("the schedule wakes the client only for a call due before what it sleeps until")
    func scheduleWakesOnlyForEarlierCalls() {
        let now = ContinuousClock.now
        var schedule = DeadlineSchedule()
        // Idle (nothing pending): the first call must wake it.
        #expect(schedule.sleep(until: nil) == nil)
        _ = schedule.added(now + .seconds(5))
        #expect(schedule.wakeRequested)
        #expect(schedule.wakeAt == now + .seconds(5))
        // It sleeps until that call; a later one does not wake it, an earlier one does.
        _ = schedule.sleep(until: now + .seconds(5))
        #expect(!schedule.wakeRequested)
        _ = schedule.added(now + .seconds(6))
        #expect(!schedule.wakeRequested)
        _ = schedule.added(now + .seconds(1))
        #expect(schedule.wakeRequested)
        #expect(schedule.wakeAt == now + .seconds(1))
    }

    @Test("the next event is the earliest deadline or probe of the calls waiting")
    func nextEventIsEarliest() {
        let now = ContinuousClock.now
        var calls = PendingCalls<Int>()
        #expect(calls.nextEvent == nil)
        calls.add("a", .init(waiter: 1, queue: "a.rpc", deadline: now + .seconds(5), probeAt: now + .seconds(2)))
        calls.add("b", .init(waiter: 2, queue: "b.rpc", deadline: now + .seconds(1), probeAt: now + .seconds(3)))
        #expect(calls.nextEvent == now + .seconds(1))
        _ = calls.complete("b")
        #expect(calls.nextEvent == now + .seconds(2))
        // Once probed, a call's next event is its deadline.
        #expect(calls.queuesToProbe(now: now + .seconds(2)) == ["a.rpc"])
        #expect(calls.nextEvent == now + .seconds(5))
    }
}
