import Warren

/// `api-gateway --help`: the defaults are GatewayConfiguration's.
let gatewayCommandLine = ServiceCommandLine(
    binary: "api-gateway",
    summary: "the HTTP API: each request becomes a request message to a service, its reply the response.",
    serves: [
        "HTTP :8080 (HTTP_HOST, HTTP_PORT): the routes of OPENAPI_PATH (GET /openapi.yaml), GET /health (200 when every service's queue has a consumer, else 503), GET /metrics (Prometheus text)",
        "calls <service>.rpc for each route's operation (users, orders, payments, events)",
    ],
    variables: [
        .init("AMQP_URL", "amqp://guest:guest@localhost:5672/", "the broker (README, Configuration)"),
        .init("HTTP_HOST", "0.0.0.0", "the address it listens on"),
        .init("HTTP_PORT", "8080", "the HTTP port"),
        .init("OPENAPI_PATH", "schemas/openapi.yaml", "the contract its routes are read from"),
        .init("JWT_SECRET", "the development secret, with a warning", "HS256 signing secret; production needs 32 random bytes or more"),
        .init("JWT_TTL_SECONDS", "3600", "token lifetime"),
        .init("WARREN_ENV", "development", "production (prod), development (dev) or test; production refuses a weak JWT_SECRET"),
        .init("RATE_LIMIT_PER_SECOND", "50", "requests per second per client address; 0 turns it off"),
        .init("RATE_LIMIT_BURST", "100", "the token bucket's size; at least RATE_LIMIT_PER_SECOND when unset"),
        .init("CORS_ORIGINS", "none", "comma-separated origins allowed from browsers, or *"),
        .init("HTTP_HEADER_TIMEOUT_SECONDS", "10", "from a request's first byte until its head is complete; 408 past it"),
        .init("HTTP_BODY_TIMEOUT_SECONDS", "30", "from the head until the body's last byte; 408 past it"),
        .init("HTTP_IDLE_TIMEOUT_SECONDS", "60", "how long a keep-alive connection may wait for its next request"),
        .init("DRAIN_TIMEOUT_SECONDS", "10", "on SIGTERM, how long requests in flight get before every connection is closed"),
        .init("HTTP_THREADS", "1", "event loop threads serving HTTP (the AMQP connection has its own)"),
        .init("LOG_LEVEL", "info", "trace, debug, info, notice, warning, error or critical"),
        .init("LOG_FORMAT", "text on a terminal, else json", "json for JSON lines"),
        .init("OTEL_EXPORTER_OTLP_ENDPOINT", "none: no export", "export traces over OTLP (and the other standard OTEL_* variables)"),
    ])
