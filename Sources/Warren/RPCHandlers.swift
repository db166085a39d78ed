public import Foundation
public import Logging

/// What a handler knows about the request it serves, and the means to call further with the
/// same correlation id, the request as cause and the same deadline.
public struct RequestContext: Sendable {
    public let envelope: Envelope
    /// Carries `correlation_id`, `message_id` and `type` in its metadata.
    public let logger: Logger
    let rpc: RPCClient?

    /// Calls another service's operation within this request's flow and deadline.
    public func call<Request: Encodable & Sendable, Response: Decodable>(
        _ operation: String, _ request: Request, as response: Response.Type = Response.self, timeout: Duration? = nil
    ) async throws(ServiceError) -> Response {
        guard let rpc else { throw .internal("this service was started without an RPC client") }
        return try await rpc.call(operation, request, as: response, timeout: timeout, envelope: envelope.caused(type: operation))
    }
}

/// The operations a service answers, by AMQP `type`: typed handlers, decoded and validated
/// from the request's JSON, their results encoded back.
public struct RPCHandlers: Sendable {
    typealias Handler = @Sendable (Data, RequestContext) async throws -> Data

    var handlers: [String: Handler] = [:]

    public init() {}

    /// Registers `operation`. The request is decoded strictly (a failing field is an `invalid`
    /// reply naming it) and, if `Validatable`, validated before `handler` runs.
    public mutating func on<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ operation: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RequestContext) async throws -> Response
    ) {
        handlers[operation] = { body, context in
            let request = try WireJSON.decode(Request.self, from: body.isEmpty ? Data("{}".utf8) : body)
            let response = try await handler(request, context)
            return try WireJSON.encode(response)
        }
    }

    /// Registers `operation` with a handler that returns the reply body already encoded, as
    /// JSON: for replies too large to go through `Encodable` at speed, such as the event
    /// store's pages that splice stored JSON in as it is. The request is decoded and validated
    /// as for `on`; the bytes returned are sent unchecked, so they must be valid JSON.
    public mutating func onRaw<Request: Decodable & Sendable>(
        _ operation: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RequestContext) async throws -> Data
    ) {
        handlers[operation] = { body, context in
            try await handler(try WireJSON.decode(Request.self, from: body.isEmpty ? Data("{}".utf8) : body), context)
        }
    }

    public var operations: [String] { handlers.keys.sorted() }
}
