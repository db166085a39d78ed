// swift-tools-version:6.1
import PackageDescription

/// Every target reads its dependencies from its imports alone.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

// Linux only (librabbitmq, Glibc, eventfd): no Apple platform is declared.
let package = Package(
    name: "warren",
    products: [
        .library(name: "WarrenAMQP", targets: ["WarrenAMQP"]),
        .library(name: "WarrenContract", targets: ["WarrenContract"]),
        .library(name: "Warren", targets: ["Warren"]),
        .library(name: "WarrenHost", targets: ["WarrenHost"]),
        .library(name: "WarrenSQLite", targets: ["WarrenSQLite"]),
        .library(name: "WarrenPostgres", targets: ["WarrenPostgres"]),
        .executable(name: "warren-bench", targets: ["WarrenBench"]),
        .executable(name: "warren-echo", targets: ["EchoService"]),
        .executable(name: "user-service", targets: ["UserService"]),
        .executable(name: "order-service", targets: ["OrderService"]),
        .executable(name: "payment-service", targets: ["PaymentService"]),
        .library(name: "WarrenGateway", targets: ["WarrenGateway"]),
        .executable(name: "api-gateway", targets: ["APIGateway"]),
        .executable(name: "event-store", targets: ["EventStore"]),
        .executable(name: "warren", targets: ["WarrenCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // The typed OpenAPI document the gateway's routes are read from (the parser inside
        // swift-openapi-generator). Without its default ExternalLoading trait, which the gateway
        // does not use and which makes it notably slower to build.
        .package(url: "https://github.com/mattpolzin/OpenAPIKit.git", from: "6.4.0", traits: []),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.1.0"),
        // Tracing API (spans, W3C context propagation) and its OTLP exporter; only OTLP/HTTP is
        // built (OTLP/gRPC would add grpc-swift to every build).
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // The CLI's management API client (already in the graph through swift-otel's OTLP/HTTP).
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-async-algorithms.git", from: "1.1.4"),
        // Tests only: property-based tests of the wire decoders.
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // The thin C wrapper over librabbitmq: only what Swift cannot call directly.
        .target(
            name: "CRabbitMQ",
            linkerSettings: [.linkedLibrary("rabbitmq")]
        ),
        .target(
            name: "WarrenAMQP",
            dependencies: [
                "CRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: swiftSettings
        ),
        // The wire contract, one home for each rule: queue and exchange names, headers, the error
        // reply, the event store's request and reply types, the wire time, AMQP value <-> JSON and
        // the request limits the JSON Schemas state. WarrenAMQP only for its value types
        // (AMQPFieldValue, AMQPTable), which headers are made of.
        .target(
            name: "WarrenContract",
            dependencies: ["WarrenAMQP"],
            swiftSettings: swiftSettings
        ),
        // The service runtime: envelope, RPC, events, consumers. Knows nothing of C, of HTTP
        // or of how the process exports its metrics and traces (WarrenHost does).
        .target(
            name: "Warren",
            dependencies: [
                "WarrenAMQP",
                "WarrenContract",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // SHA-256 for command fingerprints and derived message ids (CommandInbox.swift).
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // A service as a process: ServiceHost.run, the /health and /metrics port (Hummingbird),
        // and what only an executable's main bootstraps (logging, Prometheus, OTLP export).
        .target(
            name: "WarrenHost",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenContract",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ],
            swiftSettings: swiftSettings
        ),
        // The runtime's SQLite helpers: transactional outbox and processed-message ids.
        .target(
            name: "WarrenSQLite",
            dependencies: [
                "Warren",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // The same storage on PostgreSQL (DATABASE_URL), for instances on several hosts sharing one
        // database. It reuses WarrenSQLite's backend-neutral pieces (the outbox relay, pages).
        .target(
            name: "WarrenPostgres",
            dependencies: [
                "Warren", "WarrenSQLite",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // TLS settings for sslmode (PostgresURL.swift).
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // An example service, also run as a real process by the tests.
        .executableTarget(
            name: "EchoService",
            dependencies: [
                "Warren", "WarrenHost",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The domain services: each its own process and database; none imports another.
        .executableTarget(
            name: "UserService",
            dependencies: [
                "Warren", "WarrenHost", "WarrenSQLite", "WarrenPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                // NIOThreadPool: bcrypt off the cooperative pool (Passwords.swift).
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "OrderService",
            dependencies: [
                "Warren", "WarrenHost", "WarrenSQLite", "WarrenPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "PaymentService",
            dependencies: [
                "Warren", "WarrenHost", "WarrenSQLite", "WarrenPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // HTTP → message translation: the route table read from schemas/openapi.yaml, auth,
        // error mapping, rate limits, health and metrics. The executable only wires it up.
        .target(
            name: "WarrenGateway",
            dependencies: [
                "Warren",
                "WarrenAMQP",
                // Observability's bootstrap and /metrics rendering.
                "WarrenHost",
                "WarrenContract",
                // URI: the path and query parsing the gateway has always used.
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "JWTKit", package: "jwt-kit"),
                // Yams only decodes the YAML into OpenAPIKit's types (and reads asyncapi.yaml for /docs).
                .product(name: "Yams", package: "Yams"),
                .product(name: "OpenAPIKit", package: "OpenAPIKit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "APIGateway",
            dependencies: ["Warren", "WarrenGateway", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The event store: every event once, in order, queried by events.query.
        .executableTarget(
            name: "EventStore",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenContract", "WarrenHost", "WarrenSQLite", "WarrenPostgres",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "WarrenBench",
            dependencies: [
                "Warren", "WarrenAMQP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The operator's tool: call, publish, replay, tail, dead letters, topology.
        .executableTarget(
            name: "WarrenCLI",
            dependencies: [
                "Warren",
                "WarrenAMQP",
                "WarrenContract",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "WarrenTestSupport",
            dependencies: ["WarrenAMQP"],
            path: "Tests/WarrenTestSupport",
            swiftSettings: swiftSettings
        ),
        // The wire contract's rules, no broker: names, wire times, error replies, limits vs schemas/.
        .testTarget(
            name: "WarrenContractTests",
            dependencies: ["WarrenContract", "WarrenAMQP", "WarrenTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WarrenAMQPTests",
            dependencies: [
                "WarrenAMQP", "WarrenTestSupport", "CRabbitMQ",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WarrenTests",
            dependencies: [
                "Warren",
                "WarrenSQLite",
                "WarrenPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                "WarrenTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                "WarrenAMQP",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                // schemas/asyncapi.yaml read by AsyncAPIContractTests.
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: swiftSettings
        ),
        // The gateway as a real process over real HTTP, each test in a vhost of its own.
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenGateway", "WarrenTestSupport",
                // The typed contract the route and status tests read (OpenAPIContractTests).
                .product(name: "OpenAPIKit", package: "OpenAPIKit"),
                .product(name: "Yams", package: "Yams"),
                // The OTLP/HTTP receiver the services export their spans to (ObservabilityTests).
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                // HTTPParserError and HTTPHeaders: the statuses the HTTP layer writes (OpenAPIContractTests);
                // the in-process tests drive the responder and the HTTP pipeline directly.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The event store's logs (SQLite and PostgreSQL) in process, each test in its own database.
        .testTarget(
            name: "EventLogTests",
            dependencies: [
                "EventStore", "WarrenPostgres", "WarrenTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EventStoreTests",
            dependencies: ["Warren", "WarrenAMQP", "WarrenTestSupport"],
            swiftSettings: swiftSettings
        ),
        // The domain services as real processes, each test in a vhost of its own.
        .testTarget(
            name: "ServiceTests",
            dependencies: [
                "Warren", "WarrenAMQP", "WarrenTestSupport",
                // To hold a service's database write lock from the test (CommandOnceTests).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // What an operator runs: every binary's command line (--help, --version, usage errors),
        // run as processes that must exit without touching the broker.
        .testTarget(
            name: "OpsTests",
            dependencies: ["Warren", "WarrenGateway", "WarrenTestSupport"],
            swiftSettings: swiftSettings
        ),
        // The `warren` binary run as a process against the real broker, each test in its own vhost.
        .testTarget(
            name: "CLITests",
            dependencies: [
                "Warren",
                "WarrenAMQP",
                "WarrenCLI",
                "WarrenTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // A stand-in for an HTTP server that is not RabbitMQ's management API (ManagementAPITests).
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
