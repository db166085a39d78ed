import Foundation
import Hummingbird
import HTTPTypes
import Logging
import Metrics
import NIOCore
import Prometheus
import Tracing
import Warren

/// The gateway's one HTTP responder: every request goes through the same steps, driven by the
/// route table — CORS, rate limit, route, token, authorization rules, body, the request message,
/// the reply. A reply body is forwarded as the service sent it; only errors are re-encoded
/// (to add the request id).
struct GatewayResponder: HTTPResponder {
    typealias Context = GatewayRequestContext

    let routes: RouteTable
    let rpc: RPCClient
    let tokens: TokenAuthority
    let limiter: RateLimiter?
    let configuration: GatewayConfiguration
    let openAPI: Data
    let health: GatewayHealth?
    let registry: PrometheusCollectorRegistry
    let ids = RequestIDs()
    private let requests = MetricHandles(counter: "gateway_http_requests_total", "route", "method", "status")
    private let durations = MetricHandles(timer: "gateway_http_request_duration_seconds", "route")

    init(
        routes: RouteTable, rpc: RPCClient, tokens: TokenAuthority, configuration: GatewayConfiguration, openAPI: Data,
        health: GatewayHealth?, registry: PrometheusCollectorRegistry
    ) {
        self.routes = routes
        self.rpc = rpc
        self.tokens = tokens
        self.limiter =
            configuration.rateLimitPerSecond > 0
            ? RateLimiter(perSecond: configuration.rateLimitPerSecond, burst: configuration.rateLimitBurst) : nil
        self.configuration = configuration
        self.openAPI = openAPI
        self.health = health
        self.registry = registry
    }

    /// Each request runs in a child task: a task keeps the memory of its deepest call until it
    /// ends, and the connection's task lives as long as the connection, so with the request's
    /// calls on it every idle keep-alive connection held about 17 KB (measured, README).
    func respond(to request: Request, context: Context) async throws -> Response {
        async let response = handle(request, context: context)
        return await response
    }

    private func handle(_ request: Request, context: Context) async -> Response {
        let started = ContinuousClock.now
        let requestID = Self.requestID(request.headers[.requestID]) ?? ids.next()
        var logger = context.logger
        logger[metadataKey: "correlation_id"] = "\(requestID)"
        var routeLabel = "unmatched"
        let span = GatewayTracing.startServerSpan(method: request.method.rawValue, headers: request.headers)
        var response: Response
        do {
            if let span {
                response = try await ServiceContext.withValue(span.context) {
                    try await serve(request, context: context, requestID: requestID, logger: logger, routeLabel: &routeLabel)
                }
            } else {
                response = try await serve(request, context: context, requestID: requestID, logger: logger, routeLabel: &routeLabel)
            }
        } catch {
            response = Self.errorResponse(error, requestID: requestID)
        }
        response.headers[.requestID] = requestID
        addCORSHeaders(request, to: &response)

        let status = Int(response.status.code)
        GatewayTracing.endServerSpan(span, method: request.method.rawValue, route: routeLabel == "unmatched" ? nil : routeLabel, status: status)
        let elapsed = ContinuousClock.now - started
        // Methods outside the routes' own only as "other": clients cannot grow the label set.
        let methodLabel = routes.methods.contains(request.method.rawValue) ? request.method.rawValue : "other"
        self.requests(routeLabel, methodLabel, "\(status)").increment()
        durations(routeLabel).recordNanoseconds(Int64(elapsed / .nanoseconds(1)))
        // One line per request costs more than the rest of the request (JSON log lines): at
        // debug level, except failures of the gateway or a service, which an operator must see.
        let level: Logger.Level = status >= 500 ? .warning : .debug
        if logger.logLevel <= level {
            logger.log(
                level: level, "request",
                metadata: [
                    "method": "\(request.method.rawValue)", "route": "\(routeLabel)", "status": "\(status)",
                    "duration_ms": "\(Double(elapsed / .microseconds(10)) / 100)",
                ])
        }
        return response
    }

    private func serve(
        _ request: Request, context: Context, requestID: String, logger: Logger, routeLabel: inout String
    ) async throws(GatewayError) -> Response {
        if request.method == .options, !configuration.corsOrigins.isEmpty, request.headers[.origin] != nil {
            return preflight(request)
        }
        let path = String(request.uri.path)
        let match = routes.match(method: request.method.rawValue, path: path)
        // Health and metrics are never rate-limited: a monitor polling them must not be told 429
        // (nor lock out the clients behind the same address).
        var exempt = false
        if case .found(let route, _) = match, route.target == .health || route.target == .metrics { exempt = true }
        if !exempt, let limiter, let wait = limiter.acquire(context.remoteAddress?.ipAddress ?? "unknown") {
            let seconds = Int(min(max(1, wait.rounded(.up)), 3_600))
            throw GatewayError(
                status: 429, code: "rate_limited", message: "too many requests from your address: retry after \(seconds) s",
                headers: [("Retry-After", "\(seconds)")])
        }
        switch match {
        case .notFound:
            throw .notFound("no route \(path); GET /openapi.yaml lists them")
        case .methodNotAllowed(let allowed):
            throw GatewayError(
                status: 405, code: "method_not_allowed",
                message: "\(request.method.rawValue) is not allowed on \(path); use \(allowed.joined(separator: ", "))",
                headers: [("Allow", allowed.joined(separator: ", "))])
        case .found(let route, let pathParameters):
            routeLabel = route.path
            return try await serve(route, pathParameters: pathParameters, request: request, requestID: requestID, logger: logger)
        }
    }

    private func serve(
        _ route: Route, pathParameters: [String: String], request: Request, requestID: String, logger: Logger
    ) async throws(GatewayError) -> Response {
        // Ids in one form (a UUID in lower case) for every comparison and for the services, which
        // store them so: `/users/<own id in upper case>` is the caller's own account.
        let pathParameters = pathParameters.mapValues(Check.canonicalID)
        let operation: String
        switch route.target {
        case .operation(let name): operation = name
        case .health:
            guard let health else { return Self.json(200, Data(#"{"status":"ok"}"#.utf8)) }
            let (ok, body) = await health.check()
            return Self.json(ok ? 200 : 503, body)
        case .metrics:
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: Observability.scrape(registry: registry, connection: nil))))
        case .openapi:
            var headers = HTTPFields()
            headers[.contentType] = "application/yaml"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: openAPI)))
        }

        // Who calls, and may they.
        var caller: Caller?
        if route.access != .public {
            let verified = try await tokens.verify(authorization: request.headers[.authorization])
            if route.access == .admin, !verified.isAdmin {
                throw .forbidden("\(route.method) \(route.path) is for admins only")
            }
            if let parameter = route.selfParameter, !verified.isAdmin, pathParameters[parameter] != Check.canonicalID(verified.subject) {
                throw .forbidden("you can only act on your own account (\(parameter) must be your user id)")
            }
            caller = verified
        }
        let idempotencyKey = try Self.idempotencyKey(request.headers[.idempotencyKey])

        let body = try await readBody(request, route: route)
        let message = try MessageBody.build(
            route: route, pathParameters: pathParameters, query: request.uri.queryParameters.map { (String($0.key), String($0.value)) },
            body: body, subject: caller.map { Check.canonicalID($0.subject) })

        let deadline = Date() + route.timeout.timeInterval
        let envelope = Envelope(
            messageID: requestID, correlationID: requestID, deadline: deadline, traceparent: Self.traceparent(request.headers[.traceparent]))
        if let ownership = route.ownership, let lookup = ownership.lookup, let caller, !caller.isAdmin {
            let resource = try await call(lookup, body: message, route: route, envelope: envelope)
            try Self.checkOwner(resource, field: ownership.field, caller: caller)
        }
        // With a key, the command's message_id is derived from it (and whose, and where), so a
        // client's retry through any gateway instance is a redelivery to the service's inbox.
        let commandID = idempotencyKey.map {
            Command.derivedMessageID(idempotencyKey: $0, scope: [caller?.subject ?? "", route.method, String(request.uri.path)])
        }
        let reply = try await call(operation, body: message, route: route, envelope: envelope, messageID: commandID, idempotencyKey: idempotencyKey)
        if let ownership = route.ownership, ownership.lookup == nil, let caller, !caller.isAdmin {
            try Self.checkOwner(reply, field: ownership.field, caller: caller)
        }
        if route.issuesToken {
            return try await tokenResponse(for: reply, logger: logger)
        }
        return Self.json(route.successStatus, reply)
    }

    /// One request message; an error reply or a failed call becomes the matching HTTP error.
    private func call(
        _ operation: String, body: Data, route: Route, envelope: Envelope, messageID: String? = nil, idempotencyKey: String? = nil
    ) async throws(GatewayError) -> Data {
        var envelope = envelope
        envelope.messageID = messageID ?? ids.next()
        let reply: RPCClient.Reply
        do {
            reply = try await rpc.call(operation, body: body, timeout: route.timeout, envelope: envelope)
        } catch {
            throw GatewayError(error, method: route.method, idempotencyKey: idempotencyKey)
        }
        guard reply.isError else { return reply.body }
        guard let object = try? JSONSerialization.jsonObject(with: reply.body) as? [String: Any],
            let error = object["error"] as? [String: Any], let codeText = error["code"] as? String,
            let code = ServiceError.Code(rawValue: codeText)
        else {
            throw GatewayError(.internal("\(operation) replied with an error that is not in the error format"))
        }
        throw GatewayError(ServiceError(code, error["message"] as? String ?? codeText))
    }

    /// The body of a route that takes one: JSON only, at most `maxBodyBytes`.
    private func readBody(_ request: Request, route: Route) async throws(GatewayError) -> Data? {
        guard route.hasBody else { return nil }
        let limit = configuration.maxBodyBytes
        let tooLarge = GatewayError(
            status: 413, code: "payload_too_large", message: "the body is larger than \(limit) bytes")
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit { throw tooLarge }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch is NIOTooManyBytesError {
            throw tooLarge
        } catch {
            throw .invalid("the body could not be read: \(error)")
        }
        guard buffer.readableBytes > 0 else { return nil }
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        let mediaType = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) else {
            throw GatewayError(
                status: 415, code: "unsupported_media_type",
                message: "the body must be JSON sent as 'Content-Type: application/json'\(contentType.isEmpty ? "" : ", not '\(contentType)'")")
        }
        return Data(buffer.readableBytesView)
    }

    /// A resource that is not the caller's is reported as missing: its existence is not theirs to know.
    static func checkOwner(_ resource: Data, field: String, caller: Caller) throws(GatewayError) {
        let object = try? JSONSerialization.jsonObject(with: resource) as? [String: Any]
        guard let owner = object?[field] as? String else {
            throw GatewayError(.internal("the reply has no '\(field)' to check who owns it"))
        }
        guard Check.canonicalID(owner) == Check.canonicalID(caller.subject) else { throw .notFound("not found") }
    }

    private func tokenResponse(for reply: Data, logger: Logger) async throws(GatewayError) -> Response {
        guard let user = try? JSONSerialization.jsonObject(with: reply) as? [String: Any], let id = user["id"] as? String,
            let role = user["role"] as? String
        else {
            throw GatewayError(.internal("users.authenticate replied without the user's id and role"))
        }
        let token: String
        do {
            token = try await tokens.issue(subject: id, role: role)
        } catch {
            logger.error("could not sign a token", metadata: ["error": "\(error)"])
            throw GatewayError(.internal("could not sign a token"))
        }
        let seconds = Int(tokens.lifetime.components.seconds)
        var out = #"{"access_token":"#
        MessageBody.appendString(token, to: &out)
        out += #","expires_in":\#(seconds),"token_type":"Bearer"}"#
        return Self.json(200, Data(out.utf8))
    }

    // MARK: - Responses and headers

    static func json(_ status: Int, _ body: Data) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func errorResponse(_ error: any Error, requestID: String) -> Response {
        let gatewayError = error as? GatewayError ?? GatewayError(.internal("internal error (request id \(requestID))"))
        var response = json(gatewayError.status, gatewayError.body(requestID: requestID))
        for (name, value) in gatewayError.headers {
            if let name = HTTPField.Name(name) { response.headers[name] = value }
        }
        return response
    }

    /// The client's `X-Request-ID` if it is a sane token (what log search and headers can
    /// carry), else nil for a new UUID; either way it is the flow's correlation id.
    static func requestID(_ header: String?) -> String? {
        guard let header, (1...128).contains(header.utf8.count),
            header.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") })
        else { return nil }
        return header
    }

    /// The client's `traceparent` if it is a W3C trace context (`00-<32 hex>-<16 hex>-<2 hex>`),
    /// else nil (W3C: start a new trace). It goes into an AMQP header as it is, so nothing
    /// longer or stranger than the format is passed on.
    static func traceparent(_ header: String?) -> String? {
        guard let header, header.utf8.count == 55 else { return nil }
        let bytes = Array(header.utf8)
        func isHex(_ byte: UInt8) -> Bool { (48...57).contains(byte) || (97...102).contains(byte) }
        for (index, byte) in bytes.enumerated() {
            let dash = index == 2 || index == 35 || index == 52
            guard dash ? byte == UInt8(ascii: "-") : isHex(byte) else { return nil }
        }
        let version = header.prefix(2), traceID = bytes[3..<35], parentID = bytes[36..<52]
        guard version != "ff", traceID.contains(where: { $0 != UInt8(ascii: "0") }), parentID.contains(where: { $0 != UInt8(ascii: "0") }) else {
            return nil
        }
        return header
    }

    private func allowedOrigin(_ origin: String?) -> String? {
        guard let origin, !configuration.corsOrigins.isEmpty else { return nil }
        if configuration.corsOrigins.contains("*") { return "*" }
        return configuration.corsOrigins.contains(origin) ? origin : nil
    }

    private func addCORSHeaders(_ request: Request, to response: inout Response) {
        guard let origin = allowedOrigin(request.headers[.origin]) else { return }
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = "X-Request-ID, Retry-After"
        if origin != "*" { response.headers[.vary] = "Origin" }
    }

    private func preflight(_ request: Request) -> Response {
        var response = Response(status: .noContent)
        guard allowedOrigin(request.headers[.origin]) != nil else { return response }
        response.headers[.accessControlAllowMethods] = "GET, POST, PATCH, DELETE, OPTIONS"
        response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type, X-Request-ID, Idempotency-Key, traceparent"
        response.headers[.accessControlMaxAge] = "600"
        return response
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-ID")!
    static let traceparent = Self("traceparent")!
}
