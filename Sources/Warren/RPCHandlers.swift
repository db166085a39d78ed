public import Foundation
public import Logging
import WarrenContract

/// What a handler knows about the request it serves, and the means to call further with the
/// same correlation id, the request as cause and the same deadline.
public struct RequestContext: Sendable {
    public let envelope: Envelope
    /// Carries `correlation_id`, `message_id` and `type` in its metadata.
    public let logger: Logger
    let rpc: RPCClient?
    /// Set for an operation registered with `onCommand` whose request has a `message_id`: the
    /// handler's store records it, with the reply, in the transaction of the effects
    /// (`SQLiteCommandInbox.record`). nil for reads, and for requests without a `message_id`
    /// (which cannot be recognised when redelivered).
    public let command: Command?

    init(envelope: Envelope, logger: Logger, rpc: RPCClient?, command: Command? = nil) {
        self.envelope = envelope
        self.logger = logger
        self.rpc = rpc
        self.command = command
    }

    /// Calls another service's operation within this request's flow and deadline. Inside a
    /// command, the call's `message_id` is derived from the command's, the operation and the
    /// request body: when the command is redelivered and runs again, a command it calls is the
    /// same command to that service (answered from its inbox, not executed twice).
    public func call<Request: Encodable & Sendable, Response: Decodable>(
        _ operation: String, _ request: Request, as response: Response.Type = Response.self, timeout: Duration? = nil
    ) async throws(ServiceError) -> Response {
        guard let rpc else { throw .internal("this service was started without an RPC client") }
        let body: Data
        do {
            body = try WireJSON.encode(request)
        } catch {
            throw .internal("could not encode the request for \(operation)")
        }
        var caused = envelope.caused(type: operation)
        if let command {
            caused.messageID = Command.derivedMessageID(
                idempotencyKey: command.messageID, scope: [operation, String(decoding: body, as: UTF8.self)])
        }
        let reply = try await rpc.call(operation, body: body, timeout: timeout, envelope: caused)
        return try reply.decode(Response.self, operation: operation)
    }
}

/// The operations a service answers, by AMQP `type`: typed handlers, decoded and validated
/// from the request's JSON, their results encoded back.
public struct RPCHandlers: Sendable {
    typealias Handler = @Sendable (Data, RequestContext) async throws -> Data

    var handlers: [String: Handler] = [:]
    /// The operations with effects: looked up in the service's command inbox before they run.
    var commands: Set<String> = []

    public init() {}

    /// Registers `operation`. The request is decoded strictly (a failing field is an `invalid`
    /// reply naming it) and, if `Validatable`, validated before `handler` runs.
    public mutating func on<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ operation: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RequestContext) async throws -> Response
    ) {
        commands.remove(operation)
        handlers[operation] = { body, context in
            let request = try WireJSON.decode(Request.self, from: body.isEmpty ? Data("{}".utf8) : body)
            let response = try await handler(request, context)
            return try WireJSON.encode(response)
        }
    }

    /// Registers an operation with effects that must happen once (`orders.create`). Decoded and
    /// validated as for `on`. Before it runs, the responder looks the request's `message_id` up
    /// in the service's `CommandInbox`: a command that already committed is answered with its
    /// stored reply (a reused id with a different request is `conflict`) and not executed again.
    /// The handler must pass `context.command` to its store, which records it with the reply in
    /// the same transaction as the effects; nothing else makes a redelivery safe.
    public mutating func onCommand<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ operation: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RequestContext) async throws -> Response
    ) {
        on(operation, request, handler)
        commands.insert(operation)
    }

    /// Registers `operation` with a handler that returns the reply body already encoded, as
    /// JSON: for replies too large to go through `Encodable` at speed, such as the event
    /// store's pages that splice stored JSON in as it is. The request is decoded and validated
    /// as for `on`; the bytes returned are sent unchecked, so they must be valid JSON.
    public mutating func onRaw<Request: Decodable & Sendable>(
        _ operation: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RequestContext) async throws -> Data
    ) {
        commands.remove(operation)
        handlers[operation] = { body, context in
            try await handler(try WireJSON.decode(Request.self, from: body.isEmpty ? Data("{}".utf8) : body), context)
        }
    }

    public var operations: [String] { handlers.keys.sorted() }
}
