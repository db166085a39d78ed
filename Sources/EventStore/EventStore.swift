import Foundation
import Logging
import ServiceLifecycle
import Warren
import WarrenHost
import WarrenPostgres
import WarrenSQLite

/// The event store: records every event on `warren.events` once, in the order it arrived, and
/// answers `events.query` with pages of them (what `warren replay` reads).
///
/// Environment, beside the service host's: `DATABASE_URL` (PostgreSQL, for several instances
/// on one database) or else `DATABASE_PATH` (default `$DATA_DIR/events.sqlite`, `DATA_DIR`
/// default `data`), `EVENTS_PREFETCH` (1000) and `EVENTS_BATCH_SIZE` (500).
@main
struct EventStore {
    static func main() async throws {
        if case .exit(let status) = commandLine.resolve() { exit(status) }
        exit(await ServiceProcess.run(name: "events", defaultHTTPPort: httpPort) { resources in
            let environment = resources.environment
            let log: any EventLog
            var storage: [any Service] = []
            if let database = try await PostgresServiceDatabase.open(environment: environment, migrations: PostgresEventLog.migrations, logger: resources.logger) {
                log = PostgresEventLog(database: database)
                storage = [database]  // first, so that it stops after the ingestor's last batch
            } else {
                let path = try databasePath(environment)
                log = try SQLiteEventLog(path: path)
                resources.logger.info("event log open", metadata: ["database": "\(path)"])
            }

            var handlers = RPCHandlers()
            handlers.onRaw("events.query", EventsQuery.self) { request, _ in
                try await log.page(request.eventQuery()).replyJSON
            }
            handlers.on("events.flow", EventFlowRequest.self) { request, _ in
                try await log.flow(correlationId: request.correlationId)
            }
            var configuration = EventIngestor.Configuration()
            configuration.queueType = resources.queueType
            if let prefetch = environment["EVENTS_PREFETCH"].flatMap(UInt16.init) { configuration.prefetch = prefetch }
            if let batchSize = environment["EVENTS_BATCH_SIZE"].flatMap(Int.init), batchSize > 0 { configuration.batchSize = batchSize }
            let ingestor = EventIngestor(connection: resources.connection, log: log, configuration: configuration, logger: resources.logger)
            return ServiceDefinition(handlers: handlers, services: storage + [ingestor])
        })
    }

    /// `DATABASE_PATH`, or `events.sqlite` in `DATA_DIR` (as for every service); the folder is
    /// created if missing.
    static func databasePath(_ environment: [String: String]) throws -> String {
        let path = ServiceDatabase.path(service: "events", environment: environment)
        try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(), withIntermediateDirectories: true)
        return path
    }
}
