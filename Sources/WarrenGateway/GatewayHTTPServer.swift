import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The gateway's HTTP server: SwiftNIO's HTTP/1 pipeline with `HTTPEdgeGuard` before it and
/// `GatewayHTTPHandler` after it on every connection.
///
/// A `Service`: `run()` serves until graceful shutdown (SIGTERM), then stops accepting, asks
/// every connection to quiesce (idle ones close at once, one with a request closes after its
/// response), and after `drainTimeout` closes whatever is left, whatever clients do.
final class GatewayHTTPServer: Service {
    private let responder: GatewayResponder
    private let configuration: GatewayConfiguration
    private let logger: Logger
    private let onReady: @Sendable (Int) -> Void
    private let connections = Mutex<[ObjectIdentifier: any Channel]>([:])

    /// `onReady` gets the port listened on, once listening.
    init(responder: GatewayResponder, configuration: GatewayConfiguration, logger: Logger, onReady: @escaping @Sendable (Int) -> Void) {
        self.responder = responder
        self.configuration = configuration
        self.logger = logger
        self.onReady = onReady
    }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.httpThreads)
        do {
            try await serve(on: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func serve(on group: MultiThreadedEventLoopGroup) async throws {
        let settings = HTTPEdgeSettings(configuration)
        let responder = self.responder
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            // A client's FIN after its request still gets the answer (GatewayHTTPHandler).
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try Self.configure(channel.pipeline.syncOperations, settings: settings, responder: responder)
                    self.track(channel)
                }
            }
        let server = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        onReady(server.localAddress?.port ?? configuration.port)
        // Returns at graceful shutdown; throws when the task is cancelled: both end serving.
        try? await gracefulShutdown()
        server.close(promise: nil)
        try? await server.closeFuture.get()
        await drain()
    }

    /// A connection's handlers, on its event loop: the edge guard (timeouts, limits), SwiftNIO's
    /// HTTP/1 server pipeline, the gateway's handler. The in-process tests build the same pipeline
    /// on an `EmbeddedChannel`.
    static func configure(
        _ pipeline: ChannelPipeline.SynchronousOperations, settings: HTTPEdgeSettings, responder: GatewayResponder
    ) throws {
        let edge = HTTPEdgeGuard(settings: settings, responder: responder)
        try pipeline.addHandler(edge)
        try pipeline.configureHTTPServerPipeline(
            position: .last, withPipeliningAssistance: true, withErrorHandling: false,
            withEncoderConfiguration: .init(), withDecoderLimitConfiguration: settings.decoderLimits)
        try pipeline.addHandler(GatewayHTTPHandler(responder: responder, edge: edge, maxBodyBytes: settings.maxBodyBytes))
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        connections.withLock { $0[id] = channel }
        channel.closeFuture.whenComplete { [self] _ in
            _ = connections.withLock { $0.removeValue(forKey: id) }
        }
    }

    private func drain() async {
        for channel in connections.withLock({ Array($0.values) }) {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let deadline = ContinuousClock.now + configuration.drainTimeout
        while ContinuousClock.now < deadline, !Task.isCancelled, connections.withLock({ !$0.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = connections.withLock { Array($0.values) }
        if !left.isEmpty {
            logger.info("closing connections still open at the drain timeout", metadata: ["connections": "\(left.count)"])
        }
        for channel in left { channel.close(promise: nil) }
    }
}
