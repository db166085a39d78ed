public import Logging
public import ServiceLifecycle
import CRabbitMQ
import Foundation

/// A connection to a RabbitMQ broker, served by its own I/O thread.
///
/// librabbitmq is blocking and not thread-safe, so one dedicated thread alone calls it for this
/// connection; every method here hands that thread a job and awaits the result, never blocking
/// a cooperative thread on a socket. When the connection drops, the thread reconnects with
/// backoff and restores what was declared, the channels and the consumers; work that was on the
/// wire fails with `connectionLost` instead of hanging.
public final class AMQPConnection: Sendable {
    public let configuration: AMQPConfiguration
    let jobs: JobQueue
    private let status: ConnectionStatus

    private init(configuration: AMQPConfiguration, jobs: JobQueue, status: ConnectionStatus) {
        self.configuration = configuration
        self.jobs = jobs
        self.status = status
    }

    deinit { jobs.requestClose() }

    /// Runs tasks on the connection's I/O thread, between its reads and writes (with
    /// `withTaskExecutorPreference` or `addTask(executorPreference:)`): a consumer's handlers
    /// then take a delivery, and hand their publishes and acks over, without waking another
    /// thread for each message. Handlers of a busy RPC queue spend about a third less CPU per
    /// request this way (`warren-bench gateway`, README).
    ///
    /// Code on it must not block: while it runs, the connection reads nothing and sends
    /// nothing, not even heartbeats, on any channel. Work that computes for long, or waits on
    /// a lock or a blocking call, belongs on Swift's shared pool (the default executor). While
    /// the connection is down (connecting, recovering, closed) the tasks run on the shared pool.
    public var executor: any TaskExecutor { jobs }

    /// Connects and logs in, or throws what went wrong (`connectionRefused`,
    /// `authenticationFailed`). Recovery applies only to connections that were once up.
    public static func connect(
        _ configuration: AMQPConfiguration,
        logger: Logger = Logger(label: "warren.amqp")
    ) async throws -> AMQPConnection {
        try WireLimits.checkConfiguration(configuration)
        let jobs = try JobQueue()
        let status = ConnectionStatus()
        var logger = logger
        logger[metadataKey: "connection"] = "\(configuration.connectionName)"
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread { [logger] in
                // For `top -H`, `perf` and /proc/PID/task (Foundation's name stays inside it).
                warren_name_this_thread("warren-amqp-io")
                let loop = IOLoop(configuration: configuration, logger: logger, jobs: jobs, status: status)
                loop.run { result in continuation.resume(with: result.mapError { $0 as any Error }) }
            }
            thread.name = "warren-amqp-io"
            thread.start()
        }
        return AMQPConnection(configuration: configuration, jobs: jobs, status: status)
    }

    /// Connects using an `amqp://` or `amqps://` URL.
    public static func connect(
        url: String,
        connectionName: String = "warren",
        logger: Logger = Logger(label: "warren.amqp")
    ) async throws -> AMQPConnection {
        var configuration = try AMQPConfiguration(url: url)
        configuration.connectionName = connectionName
        return try await connect(configuration, logger: logger)
    }

    /// True while the socket is up and logged in; false during recovery. For health checks.
    public var isConnected: Bool { status.isConnected }

    /// How long the I/O thread has been running tasks (`executor`) without coming back to the
    /// socket, or nil when it runs none: past a few seconds a handler is blocking it, and once
    /// its heartbeats stop the broker drops the connection. For health checks: `isConnected`
    /// cannot change meanwhile, since only that thread would notice.
    public var tasksHoldingIOThread: Duration? { status.tasksHoldingThread }

    /// True while the broker blocks this connection (`connection.blocked`: a memory or disk
    /// alarm); a publish would wait until it ends. For health checks.
    public var isBlocked: Bool { status.isBlocked }

    /// The broker node the connection is on while connected (one of `configuration.endpoints`),
    /// nil during recovery. For logs, metrics and tests.
    public var node: AMQPConfiguration.Endpoint? { status.endpoint }

    /// How many times the connection was lost and re-established; for metrics and tests.
    public var recoveries: Int { status.recoveries }

    /// Opens a channel. Channels isolate failures: a channel the broker closes (say, after a
    /// publish to a missing exchange) reopens on next use, and other channels never notice.
    public func openChannel() async throws -> AMQPChannel {
        let handle = try await jobs.perform { loop throws(AMQPError) in try loop.openChannel() }
        return AMQPChannel(handle: handle)
    }

    /// Closes the connection cleanly: queued work runs, confirms already on the wire get a few
    /// seconds to arrive, consumers finish, then the I/O thread exits.
    public func close() async {
        jobs.requestClose()
        await status.waitUntilFinished()
    }
}

extension AMQPConnection: Service {
    /// Owns the connection's I/O thread and its reconnects for the life of a `ServiceGroup`:
    /// returns after graceful shutdown (SIGTERM) or cancellation, once the thread has closed the
    /// connection and exited. Throws what ended the connection if it ends by itself — lost with
    /// recovery disabled — so that the group learns its broker connection is gone instead of
    /// serving without one. A connection closed by `close()` waits for the shutdown, as before.
    public func run() async throws {
        let jobs = jobs
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await status.waitUntilFinished()
            } onGracefulShutdown: {
                jobs.requestClose()
            }
        } onCancel: {
            jobs.requestClose()
        }
        if let failure = status.failure { throw failure }
        // Closed by `close()` before the group stops: stay until it does, like the other services.
        if !Task.isCancelled, !Task.isShuttingDownGracefully { try? await gracefulShutdown() }
        await close()
    }
}
