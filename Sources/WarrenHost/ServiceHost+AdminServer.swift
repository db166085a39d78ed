import Hummingbird
public import Logging
public import Prometheus
public import ServiceLifecycle
public import Warren
public import WarrenAMQP

/// The service's own HTTP port, on Hummingbird: kept out of the `Warren` runtime, which
/// depends only on WarrenAMQP, so that a library user pulls in no HTTP server.
extension ServiceHost {
    /// `/health`: broker connectivity and each consumer's state (ConsumerHealth); 503 while the
    /// broker is disconnected, while handlers hold the connection's thread for over
    /// `ioThreadHeldLimit`, or while any consumer is not taking messages (starting, restarting,
    /// stopped, or stalled for `stallAfter`). `/metrics`: Prometheus text.
    public static func adminServer(
        name: String, port: Int, connection: AMQPConnection, registry: PrometheusCollectorRegistry, stallAfter: Duration,
        health: ConsumerHealth = .process, logger: Logger
    ) -> some Service {
        let router = Router()
        router.get("health") { _, _ -> Response in
            let (healthy, body) = healthReport(
                name: name, connected: connection.isConnected, consumers: health.statuses(), stallAfter: stallAfter,
                ioThreadHeld: connection.tasksHoldingIOThread)
            return Response(
                status: healthy ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: Observability.scrape(registry: registry, connection: connection))))
        }
        return Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port), serverName: name), logger: logger)
    }

}
