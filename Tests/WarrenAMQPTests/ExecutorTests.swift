import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Tasks on a connection's I/O thread (AMQPConnection.executor)", .timeLimit(.minutes(2)))
struct ExecutorTests {
    @Test("a task that prefers the executor runs on the I/O thread, also after awaiting the broker through that same thread")
    func runsOnIOThread() async throws {
        let connection = try await Broker.connect()
        let queue = Broker.unique("executor")
        let names = try await withTaskExecutorPreference(connection.executor) {
            // The preference applies from the task's next enqueue on.
            await Task.yield()
            let first = currentThreadName()
            // A confirmed publish and a get: jobs for the thread this task runs on, awaited.
            let channel = try await connection.openChannel()
            try await channel.declareQueue(queue, durable: false)
            try await channel.enableConfirms()
            try await channel.publish(Data("x".utf8), routingKey: queue)
            let got = try await pollGet(channel, queue: queue)
            try got?.ack()
            try await channel.deleteQueue(queue)
            return [first, currentThreadName(), got.map { String(decoding: $0.body, as: UTF8.self) } ?? "nothing"]
        }
        #expect(names == ["warren-amqp-io", "warren-amqp-io", "x"])
        // Without the preference: the shared pool.
        #expect(currentThreadName() != "warren-amqp-io")
        await connection.close()
    }

    @Test("while the connection is down, and after it closed, tasks that prefer its thread still run, on the shared pool")
    func runsWhileDown() async throws {
        let proxy = try TCPProxy()
        defer { proxy.stop() }
        var configuration = try Broker.configuration()
        configuration.host = "127.0.0.1"
        configuration.port = Int(proxy.port)
        configuration.heartbeat = .seconds(1)
        configuration.recovery.initialBackoff = .milliseconds(200)
        configuration.recovery.maxBackoff = .milliseconds(500)
        let connection = try await AMQPConnection.connect(configuration)
        proxy.blackhole()
        try await waitUntil(within: .seconds(10)) { !connection.isConnected }
        // The I/O thread is reconnecting (and failing: the proxy swallows everything).
        let down = await withTaskExecutorPreference(connection.executor) {
            try? await Task.sleep(for: .milliseconds(20))
            return currentThreadName()
        }
        #expect(down != "warren-amqp-io")
        proxy.cut()
        proxy.restore()
        try await waitUntil(within: .seconds(10)) { connection.isConnected }
        let up = await withTaskExecutorPreference(connection.executor) {
            try? await Task.sleep(for: .milliseconds(20))
            return currentThreadName()
        }
        #expect(up == "warren-amqp-io")
        await connection.close()
        let closed = await withTaskExecutorPreference(connection.executor) {
            try? await Task.sleep(for: .milliseconds(20))
            return currentThreadName()
        }
        #expect(closed != "warren-amqp-io")
    }

    @Test("a task that blocks the I/O thread shows in tasksHoldingIOThread while it does, for /health; none is nil")
    func holdingReported() async throws {
        let connection = try await Broker.connect()
        #expect(connection.tasksHoldingIOThread == nil)
        // The task holds the thread until it is told to let go, and the reading waits until it
        // started: on a loaded machine the thread may take a while to run it (a fixed 400 ms
        // block read after 200 ms found nothing in a parallel CI run).
        let started = Flag()
        let release = Flag()
        defer { release.set() }
        let blocking = Task(executorPreference: connection.executor) { () -> String in
            let thread = currentThreadName()
            started.set()
            // What a handler must never do: block the thread.
            while !release.isSet { _ = usleep(5_000) }
            return thread
        }
        try await waitUntil(within: .seconds(10)) { started.isSet }
        try await Task.sleep(for: .milliseconds(150))
        let held = connection.tasksHoldingIOThread
        release.set()
        #expect(await blocking.value == "warren-amqp-io")
        #expect(held.map { $0 >= .milliseconds(100) && $0 < .seconds(5) } == true, "\(String(describing: held))")
        try await waitUntil(within: .seconds(2)) { connection.tasksHoldingIOThread == nil }
        await connection.close()
    }

    @Test("many tasks on the I/O thread, each publishing and awaiting its confirm, all finish")
    func manyTasks() async throws {
        let connection = try await Broker.connect()
        let queue = Broker.unique("executor-many")
        let setup = try await connection.openChannel()
        try await setup.declareQueue(queue, durable: false)
        let channel = try await connection.openChannel()
        try await channel.enableConfirms()
        let sent = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<500 {
                group.addTask(executorPreference: connection.executor) {
                    try await channel.publish(Data("\(index)".utf8), routingKey: queue)
                    return currentThreadName() == "warren-amqp-io" ? 1 : 0
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(sent == 500)
        #expect(try await setup.inspectQueue(queue).messageCount == 500)
        try await setup.deleteQueue(queue)
        await connection.close()
    }
}
