import Foundation
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import Prometheus
import Tracing
import Warren
import WarrenContract
import WarrenHost

/// A request as the HTTP layer read it: the head, the whole body (bounded by `maxBodyBytes`),
/// the client's address and the request id the layer chose.
struct GatewayRequest: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer?
    var remoteAddress: String?
    var requestID: String

    /// A header's value; one sent several times is its values joined with ", " (as HTTP folds
    /// them), so a duplicated single-valued header is seen, not half of it.
    func header(_ name: String) -> String? {
        let values = head.headers[name]
        switch values.count {
        case 0: return nil
        case 1: return values[0]
        default: return values.joined(separator: ", ")
        }
    }
}

/// A response before the HTTP layer writes it (it adds `Content-Length` and `Connection`).
struct GatewayResponse: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer

    init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// The gateway's one HTTP responder: every request goes through the same steps, driven by the
/// route table — CORS, rate limit, route, token, authorization rules, body, the request message,
/// the reply. A reply body is forwarded as the service sent it once it is known to be JSON;
/// only errors are re-encoded (to add the request id).
///
/// `respond(to:completion:)` is where a request begins and ends. The common request (a route
/// that is one operation, called with a token already verified) runs without a task: its
/// checks run on the event loop, the message goes to the AMQP I/O thread and the reply comes
/// back through a closure. The rest (a token seen for the first time, `/health`, an owner
/// lookup, issuing a token) runs in a task.
final class GatewayResponder: Sendable {
    let routes: RouteTable
    /// The services, through the broker (`RPCClient`) or, in tests, in process. An existential
    /// opened once per call (`send`): no allocation, no task (`warren-bench gateway`).
    let services: any ServiceCaller
    let tokens: TokenAuthority
    let limiter: RateLimiter?
    let configuration: GatewayConfiguration
    let openAPI: ByteBuffer
    let health: GatewayHealth?
    /// `/docs` and the raw contracts (GatewayDocs.swift); nil: those routes answer 404.
    let docs: GatewayDocs?
    let registry: PrometheusCollectorRegistry
    let logger: Logger
    let ids = RequestIDs()
    private let requests = MetricHandles(counter: "gateway_http_requests_total", "route", "method", "status")
    private let durations = MetricHandles(timer: "gateway_http_request_duration_seconds", "route")

    init(
        routes: RouteTable, services: any ServiceCaller, tokens: TokenAuthority, configuration: GatewayConfiguration, openAPI: Data,
        health: GatewayHealth?, registry: PrometheusCollectorRegistry, logger: Logger, docs: GatewayDocs? = nil
    ) {
        self.docs = docs
        self.routes = routes
        self.services = services
        self.tokens = tokens
        self.limiter =
            configuration.rateLimitPerSecond > 0
            ? RateLimiter(perSecond: configuration.rateLimitPerSecond, burst: configuration.rateLimitBurst) : nil
        self.configuration = configuration
        self.openAPI = ByteBuffer(bytes: openAPI)
        self.health = health
        self.registry = registry
        self.logger = logger
    }

    /// The request id of a request: the client's `X-Request-ID` if sane, else a new UUID.
    func requestID(for head: HTTPRequestHead) -> String {
        Self.requestID(head.headers.first(name: "x-request-id")) ?? ids.next()
    }

    /// Answers `request`; `completion` runs exactly once, on any thread, with the response
    /// complete (request id, CORS headers). Metrics and the access log line are written here.
    func respond(to request: GatewayRequest, completion: @escaping @Sendable (GatewayResponse) -> Void) {
        let started = ContinuousClock.now
        let span = GatewayTracing.startServerSpan(method: request.head.method.rawValue, headers: request.head.headers)
        let finish: @Sendable (GatewayResponse, String) -> Void = { [self] response, routeLabel in
            var response = response
            self.decorate(&response, request: request.head, requestID: request.requestID)
            GatewayTracing.endServerSpan(
                span, method: request.head.method.rawValue, route: routeLabel == "unmatched" ? nil : routeLabel, status: response.status)
            self.record(
                response.status, method: request.head.method.rawValue, routeLabel: routeLabel, started: started, requestID: request.requestID,
                body: response.body)
            completion(response)
        }
        if let preflight = preflight(request.head) {
            finish(preflight, "unmatched")
            return
        }
        var routeLabel = "unmatched"
        do {
            let (route, pathParameters) = try select(request)
            routeLabel = route.path
            let label = routeLabel
            switch route.target {
            case .operation:
                break
            case .health:
                guard let health else {
                    finish(Self.json(200, ByteBuffer(string: #"{"status":"ok"}"#)), label)
                    return
                }
                Task {
                    let (ok, body) = await health.check()
                    finish(Self.json(ok ? 200 : 503, ByteBuffer(bytes: body)), label)
                }
                return
            case .metrics:
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "text/plain; version=0.0.4")
                finish(GatewayResponse(status: 200, headers: headers, body: ByteBuffer(bytes: Observability.scrape(registry: registry, connection: nil))), label)
                return
            case .openapi:
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/yaml")
                finish(GatewayResponse(status: 200, headers: headers, body: openAPI), label)
                return
            case .docs, .asyncapi:
                guard let docs else { throw GatewayError.notFound("this gateway serves no documentation") }
                finish(try docs.response(for: route.target), label)
                return
            }
            // The common case without a task: the caller is known (public route, or a token
            // verified before) and the route is one call whose reply is the answer.
            let caller = route.access == .public ? nil : try tokens.cachedCaller(authorization: request.header("authorization"))
            if route.access == .public || caller != nil, route.ownership?.lookup == nil || caller?.isAdmin != false, !route.issuesToken {
                let call = try prepare(route, pathParameters: pathParameters, request: request, caller: caller)
                Self.send(
                    call, through: services, route: route, caller: caller, requestID: request.requestID, context: span?.context,
                    label: label, logger: logger, finish: finish)
                return
            }
            Task {
                let response: GatewayResponse
                do {
                    // Under the server span, so that the route's calls are its children.
                    if let span {
                        response = try await ServiceContext.withValue(span.context) {
                            try await self.serve(route, pathParameters: pathParameters, request: request)
                        }
                    } else {
                        response = try await self.serve(route, pathParameters: pathParameters, request: request)
                    }
                } catch {
                    response = Self.errorResponse(error, requestID: request.requestID)
                }
                finish(response, label)
            }
        } catch {
            finish(Self.errorResponse(error, requestID: request.requestID), routeLabel)
        }
    }

    /// An answer the HTTP layer gives before the request reaches `respond` (a body too large
    /// by its Content-Length, a refused `Expect`, a timeout, a malformed request): the same
    /// JSON error, headers and metrics as any other.
    func reject(_ error: GatewayError, head: HTTPRequestHead?, requestID: String) -> GatewayResponse {
        var response = Self.errorResponse(error, requestID: requestID)
        if let head { decorate(&response, request: head, requestID: requestID) } else { response.headers.replaceOrAdd(name: "X-Request-ID", value: requestID) }
        record(response.status, method: head?.method.rawValue ?? "other", routeLabel: "unmatched", started: nil, requestID: requestID, body: response.body)
        return response
    }

    /// What may be refused before a body is read (`Expect: 100-continue`): no route, a method
    /// the route does not take, a token missing or malformed on a route that needs one.
    func refusalBeforeBody(_ head: HTTPRequestHead) -> GatewayError? {
        let path = URI(head.uri).path
        switch routes.match(method: Self.routingMethod(head.method), path: path) {
        case .notFound: return .notFound("no route \(path); GET /openapi.yaml lists them")
        case .methodNotAllowed(let allowed): return Self.methodNotAllowed(head.method.rawValue, path: path, allowed: allowed)
        case .found(let route, _):
            guard route.access != .public else { return nil }
            do {
                _ = try TokenAuthority.bearerToken(head.headers.first(name: "authorization"))
                return nil
            } catch {
                return error
            }
        }
    }

    private func decorate(_ response: inout GatewayResponse, request head: HTTPRequestHead, requestID: String) {
        response.headers.replaceOrAdd(name: "X-Request-ID", value: requestID)
        guard let origin = allowedOrigin(head.headers.first(name: "origin")) else { return }
        response.headers.replaceOrAdd(name: "Access-Control-Allow-Origin", value: origin)
        response.headers.replaceOrAdd(name: "Access-Control-Expose-Headers", value: "X-Request-ID, Retry-After")
        if origin != "*" { response.headers.replaceOrAdd(name: "Vary", value: "Origin") }
    }

    /// `body`: the response's, whose JSON error (its start) goes into the line of a 5xx, so that
    /// an operator sees why without the client's help.
    private func record(_ status: Int, method: String, routeLabel: String, started: ContinuousClock.Instant?, requestID: String, body: ByteBuffer) {
        // Methods outside the routes' own only as "other": clients cannot grow the label set.
        let methodLabel = routes.methods.contains(method) || method == "HEAD" ? method : "other"
        self.requests(routeLabel, methodLabel, "\(status)").increment()
        let elapsed = started.map { ContinuousClock.now - $0 }
        if let elapsed { durations(routeLabel).recordNanoseconds(Int64(elapsed / .nanoseconds(1))) }
        // One line per request costs more than the rest of the request (JSON log lines): at
        // debug level, except failures of the gateway or a service, which an operator must see.
        let level: Logger.Level = status >= 500 ? .warning : .debug
        if logger.logLevel <= level {
            var logger = logger
            logger[metadataKey: "correlation_id"] = "\(requestID)"
            var metadata: Logger.Metadata = [
                "method": "\(method)", "route": "\(routeLabel)", "status": "\(status)",
                "duration_ms": "\(elapsed.map { Double($0 / .microseconds(10)) / 100 } ?? 0)",
            ]
            if status >= 500 { metadata["error"] = "\(String(buffer: body.getSlice(at: body.readerIndex, length: min(body.readableBytes, 512)) ?? ByteBuffer()))" }
            logger.log(level: level, "request", metadata: metadata)
        }
    }

    /// HEAD is routed as GET (RFC 9110: the same status and headers, without the body).
    static func routingMethod(_ method: HTTPMethod) -> String {
        method == .HEAD ? "GET" : method.rawValue
    }

    static func methodNotAllowed(_ method: String, path: String, allowed: [String]) -> GatewayError {
        let allowed = allowed.contains("GET") ? allowed + ["HEAD"] : allowed
        return GatewayError(
            status: 405, code: "method_not_allowed",
            message: "\(method) is not allowed on \(path); use \(allowed.joined(separator: ", "))",
            headers: [("Allow", allowed.joined(separator: ", "))])
    }

    /// CORS preflight, rate limit and route: the route, or the error (a preflight's answer is
    /// thrown as its response).
    private func select(_ request: GatewayRequest) throws(GatewayError) -> (Route, [String: String]) {
        let head = request.head
        let path = URI(head.uri).path
        let match = routes.match(method: Self.routingMethod(head.method), path: path)
        // Health and metrics are never rate-limited: a monitor polling them must not be told 429
        // (nor lock out the clients behind the same address).
        var exempt = false
        if case .found(let route, _) = match, route.target == .health || route.target == .metrics { exempt = true }
        if !exempt, let limiter, let wait = limiter.acquire(request.remoteAddress ?? "unknown") {
            let seconds = Int(min(max(1, wait.rounded(.up)), 3_600))
            throw GatewayError(
                status: 429, code: "rate_limited", message: "too many requests from your address: retry after \(seconds) s",
                headers: [("Retry-After", "\(seconds)")])
        }
        switch match {
        case .notFound:
            throw .notFound("no route \(path); GET /openapi.yaml lists them")
        case .methodNotAllowed(let allowed):
            throw Self.methodNotAllowed(head.method.rawValue, path: path, allowed: allowed)
        case .found(let route, let pathParameters):
            // Ids in one form (a UUID in lower case) for every comparison and for the services, which
            // store them so: `/users/<own id in upper case>` is the caller's own account.
            return (route, pathParameters.mapValues(Check.canonicalID))
        }
    }

    /// One request message, ready to send.
    struct PreparedCall: Sendable {
        var operation: String
        var body: Data
        var envelope: Envelope
        var idempotencyKey: String?
        var method: String
    }

    /// Authorization rules, the idempotency key, the body and the message: everything between
    /// knowing the caller and sending.
    private func prepare(
        _ route: Route, pathParameters: [String: String], request: GatewayRequest, caller: Caller?
    ) throws(GatewayError) -> PreparedCall {
        guard case .operation(let operation) = route.target else { throw GatewayError(.internal("not an operation route")) }
        if let caller {
            if route.access == .admin, !caller.isAdmin {
                throw .forbidden("\(route.method) \(route.path) is for admins only")
            }
            if let parameter = route.selfParameter, !caller.isAdmin, pathParameters[parameter] != Check.canonicalID(caller.subject) {
                throw .forbidden("you can only act on your own account (\(parameter) must be your user id)")
            }
        }
        let idempotencyKey = try Self.idempotencyKey(request.header("idempotency-key"))
        let body = try readBody(request, route: route)
        let uri = URI(request.head.uri)
        let message = try MessageBody.build(
            route: route, pathParameters: pathParameters, query: uri.queryParameters.map { (String($0.key), String($0.value)) },
            body: body, subject: caller.map { Check.canonicalID($0.subject) })
        let deadline = Date() + route.timeout.timeInterval
        var envelope = Envelope(
            messageID: request.requestID, correlationID: request.requestID, deadline: deadline,
            traceparent: Self.traceparent(request.header("traceparent")))
        // With a key, the command's message_id is derived from it (and whose, and where), so a
        // client's retry through any gateway instance is a redelivery to the service's inbox.
        envelope.messageID =
            idempotencyKey.map {
                Command.derivedMessageID(idempotencyKey: $0, scope: [caller?.subject ?? "", route.method, uri.path])
            } ?? ids.next()
        return PreparedCall(operation: operation, body: message, envelope: envelope, idempotencyKey: idempotencyKey, method: route.method)
    }

    /// Sends `call` and hands its response to `finish`: one closure, as the call alone needs.
    /// Generic so that `services` (an existential) is opened here rather than its reply converted.
    private static func send<Services: ServiceCaller>(
        _ call: PreparedCall, through services: Services, route: Route, caller: Caller?, requestID: String, context: ServiceContext?,
        label: String, logger: Logger, finish: @escaping @Sendable (GatewayResponse, String) -> Void
    ) {
        services.call(call.operation, body: call.body, timeout: route.timeout, envelope: call.envelope, context: context) { result in
            let response: GatewayResponse
            do {
                response = try answer(result, call: call, route: route, caller: caller, logger: logger)
            } catch {
                response = errorResponse(error, requestID: requestID)
            }
            finish(response, label)
        }
    }

    /// The response for a call's outcome: the reply as the service sent it, or the HTTP error
    /// its error reply or failure stands for.
    private static func answer<Reply: ServiceReply>(
        _ result: Result<Reply, ServiceError>, call: PreparedCall, route: Route, caller: Caller?, logger: Logger
    ) throws(GatewayError) -> GatewayResponse {
        let reply: Data
        do {
            reply = try replyBody(
                result, operation: call.operation, method: call.method, idempotencyKey: call.idempotencyKey,
                correlationID: call.envelope.correlationID, logger: logger)
        } catch {
            throw concealed(error, route: route, caller: caller)
        }
        if let ownership = route.ownership, ownership.lookup == nil, let caller, !caller.isAdmin {
            try Self.checkOwner(reply, field: ownership.field, caller: caller)
        }
        return Self.json(route.successStatus, ByteBuffer(bytes: reply))
    }

    /// On a route with `x-warren-owner`, a non-admin's 404 is always `ownedNotFound`, whether
    /// the resource is missing (the service's "no order …") or someone else's (`checkOwner`):
    /// one body for both, so the answer never tells whether another user's resource exists.
    static func concealed(_ error: GatewayError, route: Route, caller: Caller?) -> GatewayError {
        guard error.status == 404, route.ownership != nil, caller?.isAdmin != true else { return error }
        return ownedNotFound
    }

    /// The one 404 of an owned route for a non-admin caller.
    static let ownedNotFound = GatewayError.notFound("not found")

    /// The path a request takes when something on it must wait: verifying a token seen for the
    /// first time, an owner lookup, signing a token.
    private func serve(_ route: Route, pathParameters: [String: String], request: GatewayRequest) async throws(GatewayError) -> GatewayResponse {
        var caller: Caller?
        if route.access != .public {
            caller = try await tokens.verify(authorization: request.header("authorization"))
        }
        let call = try prepare(route, pathParameters: pathParameters, request: request, caller: caller)
        if let ownership = route.ownership, let lookup = ownership.lookup, let caller, !caller.isAdmin {
            var envelope = call.envelope
            envelope.messageID = ids.next()
            let looked = await rpcResult(lookup, body: call.body, route: route, envelope: envelope)
            let resource: Data
            do {
                // A read: if it fails, the route's own operation was never sent.
                resource = try Self.replyBody(
                    looked, operation: lookup, method: "GET", idempotencyKey: nil, correlationID: envelope.correlationID, logger: logger)
            } catch {
                if error.code == ServiceError.Code.timeout.rawValue {
                    throw GatewayError(
                        status: 504, code: error.code,
                        message: "the owner check (\(lookup)) got no answer in time, so the request was not sent; it can be retried")
                }
                throw Self.concealed(error, route: route, caller: caller)
            }
            try Self.checkOwner(resource, field: ownership.field, caller: caller)
        }
        let result = await rpcResult(call.operation, body: call.body, route: route, envelope: call.envelope)
        if route.issuesToken {
            let reply = try Self.replyBody(
                result, operation: call.operation, method: call.method, idempotencyKey: call.idempotencyKey,
                correlationID: call.envelope.correlationID, logger: logger)
            return try await tokenResponse(for: reply)
        }
        return try Self.answer(result, call: call, route: route, caller: caller, logger: logger)
    }

    private func rpcResult(_ operation: String, body: Data, route: Route, envelope: Envelope) async -> Result<PlainReply, ServiceError> {
        await Self.result(of: services, operation, body: body, route: route, envelope: envelope)
    }

    /// The reply reduced to what the gateway reads (whether it is an error, its body), so that
    /// the task paths need not be generic.
    private static func result<Services: ServiceCaller>(
        of services: Services, _ operation: String, body: Data, route: Route, envelope: Envelope
    ) async -> Result<PlainReply, ServiceError> {
        await services.call(operation, body: body, timeout: route.timeout, envelope: envelope).map { PlainReply(isError: $0.isError, body: $0.body) }
    }

    /// A reply's body; an error reply or a failed call becomes the matching HTTP error, and a
    /// reply that breaks the reply format (schemas/warren) 502, logged at warning with the
    /// correlation id: a body that is not JSON, an error body not in the error format, no
    /// valid `x-status` (which `RPCClient` logs).
    static func replyBody<Reply: ServiceReply>(
        _ result: Result<Reply, ServiceError>, operation: String, method: String, idempotencyKey: String?, correlationID: String,
        logger: Logger
    ) throws(GatewayError) -> Data {
        let reply: Reply
        switch result {
        case .success(let value): reply = value
        case .failure(let error):
            if RPCClient.isInvalidStatus(error) {
                throw .badGateway("\(operation) replied without a valid x-status header (ok or error); the request may have run")
            }
            throw GatewayError(error, method: method, idempotencyKey: idempotencyKey)
        }
        if reply.isError {
            if let error = ErrorReply.decoded(reply.body) { throw GatewayError(error) }
            logBrokenReply(reply.body, "an error reply not in the error format", operation: operation, correlationID: correlationID, logger: logger)
            throw .badGateway("\(operation) replied with an error that is not in the error format")
        }
        guard Self.isJSON(reply.body) else {
            logBrokenReply(reply.body, "a reply whose body is not JSON", operation: operation, correlationID: correlationID, logger: logger)
            throw .badGateway("\(operation) replied with a body that is not JSON; the request may have run")
        }
        return reply.body
    }

    /// Whether `body` is one whole JSON document (any top-level value) in UTF-8, without
    /// building it (`JSONSerialization` built every reply's object tree, about five times the
    /// cost). Foundation's decoder scans the whole text before `JSONSyntax`, which reads
    /// nothing, is asked for a value: that refuses a cut, trailing bytes, unbalanced brackets,
    /// a missing colon or comma, NaN and bare words. The scan does not look inside strings and
    /// numbers, so two passes over the bytes add what it skips and matters most: UTF-8 (no
    /// stray byte, no surrogate), no control byte but tab, CR and LF (so no NUL, no UTF-16, no
    /// raw control character in a string), no byte order mark. Still taken, as the scan skips
    /// them: a bad escape (`"\x"`), a malformed number (`01`, `1.`, `-`), a trailing comma.
    static func isJSON(_ body: Data) -> Bool {
        let bytesFit = body.withUnsafeBytes { bytes -> Bool in
            var ascii = true
            for byte in bytes {
                if byte < 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D { return false }
                if byte >= 0x80 { ascii = false }
            }
            if ascii { return true }
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return false }
            // `transcode` answers whether it met an encoding error.
            return !transcode(bytes.makeIterator(), from: UTF8.self, to: UTF32.self, stoppingOnError: true) { _ in }
        }
        return bytesFit && (try? jsonScanner.decode(JSONSyntax.self, from: body)) != nil
    }

    /// One decoder for every reply: decoding keeps no state in it, and its options never change.
    private static let jsonScanner = JSONDecoder()

    /// Any JSON value, of which nothing is kept.
    private struct JSONSyntax: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    /// A warning an operator can find by the request's correlation id, with the start of the
    /// reply (escaped, as the client is not shown it).
    private static func logBrokenReply(_ body: Data, _ what: Logger.Message, operation: String, correlationID: String, logger: Logger) {
        var logger = logger
        logger[metadataKey: "correlation_id"] = "\(correlationID)"
        logger.warning(
            "\(what)",
            metadata: [
                "operation": "\(operation)", "bytes": "\(body.count)",
                "reply": "\(String(decoding: body.prefix(200), as: UTF8.self).debugDescription)",
            ])
    }

    /// The body of a route that takes one: JSON only, at most `maxBodyBytes` (the HTTP layer
    /// stops reading past it and answers 413 itself).
    private func readBody(_ request: GatewayRequest, route: Route) throws(GatewayError) -> Data? {
        guard route.hasBody else { return nil }
        guard let buffer = request.body, buffer.readableBytes > 0 else { return nil }
        guard buffer.readableBytes <= configuration.maxBodyBytes else {
            throw GatewayError(status: 413, code: "payload_too_large", message: "the body is larger than \(configuration.maxBodyBytes) bytes")
        }
        let contentType = request.header("content-type")?.lowercased() ?? ""
        let parts = contentType.split(separator: ";", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let mediaType = parts.first ?? ""
        guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) else {
            throw GatewayError(
                status: 415, code: "unsupported_media_type",
                message: "the body must be JSON sent as 'Content-Type: application/json'\(contentType.isEmpty ? "" : ", not '\(contentType)'")")
        }
        if let charset = Self.charset(parts.dropFirst()), charset != "utf-8" {
            throw GatewayError(
                status: 415, code: "unsupported_media_type",
                message: "the body must be JSON in UTF-8 (charset=utf-8 or no charset), not charset '\(charset)'")
        }
        return Data(buffer.readableBytesView)
    }

    /// The `charset` of a media type's parameters (already in lower case), without quotes; nil
    /// when none is given. Given twice, the values are joined so that they cannot be utf-8.
    static func charset(_ parameters: ArraySlice<String>) -> String? {
        let values = parameters.compactMap { parameter -> String? in
            guard let equals = parameter.firstIndex(of: "=") else { return nil }
            guard parameter[..<equals].trimmingCharacters(in: .whitespaces) == "charset" else { return nil }
            var value = parameter[parameter.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            return value
        }
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }

    /// A resource that is not the caller's is reported as missing: its existence is not theirs to know.
    static func checkOwner(_ resource: Data, field: String, caller: Caller) throws(GatewayError) {
        let object = try? JSONSerialization.jsonObject(with: resource) as? [String: Any]
        guard let owner = object?[field] as? String else {
            throw GatewayError(.internal("the reply has no '\(field)' to check who owns it"))
        }
        guard Check.canonicalID(owner) == Check.canonicalID(caller.subject) else { throw ownedNotFound }
    }

    private func tokenResponse(for reply: Data) async throws(GatewayError) -> GatewayResponse {
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
        return Self.json(200, ByteBuffer(string: out))
    }

    // MARK: - Responses and headers

    static func json(_ status: Int, _ body: ByteBuffer) -> GatewayResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        return GatewayResponse(status: status, headers: headers, body: body)
    }

    static func errorResponse(_ error: any Error, requestID: String) -> GatewayResponse {
        let gatewayError = error as? GatewayError ?? GatewayError(.internal("internal error (request id \(requestID))"))
        var response = json(gatewayError.status, ByteBuffer(bytes: gatewayError.body(requestID: requestID)))
        for (name, value) in gatewayError.headers {
            response.headers.replaceOrAdd(name: name, value: value)
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

    /// The answer to a CORS preflight (`OPTIONS` with `Origin`), when CORS is configured; nil otherwise.
    func preflight(_ head: HTTPRequestHead) -> GatewayResponse? {
        guard head.method == .OPTIONS, !configuration.corsOrigins.isEmpty, let origin = head.headers.first(name: "origin") else { return nil }
        var response = GatewayResponse(status: 204)
        guard allowedOrigin(origin) != nil else { return response }
        response.headers.add(name: "Access-Control-Allow-Methods", value: "GET, HEAD, POST, PATCH, DELETE, OPTIONS")
        response.headers.add(name: "Access-Control-Allow-Headers", value: "Authorization, Content-Type, X-Request-ID, Idempotency-Key, traceparent")
        response.headers.add(name: "Access-Control-Max-Age", value: "600")
        return response
    }
}
