public import Foundation
import WarrenContract

/// The operations a service answers, by AMQP `type`: typed handlers, decoded and validated
/// from the request's JSON, their results encoded back.
public struct RPCHandlers: Sendable {
    typealias Handler = @Sendable (Data, RPCContext) async throws -> Data

    var handlers: [String: Handler] = [:]
    /// The operations with effects: looked up in the service's command inbox before they run.
    var commands: Set<String> = []

    public init() {}

    /// Registers `operation`. The request is decoded strictly (a failing field is an `invalid`
    /// reply naming it) and, if `Validatable`, validated before `handler` runs.
    public mutating func on<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ operation: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RPCContext) async throws -> Response
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
        _ handler: @escaping @Sendable (Request, RPCContext) async throws -> Response
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
        _ handler: @escaping @Sendable (Request, RPCContext) async throws -> Data
    ) {
        commands.remove(operation)
        handlers[operation] = { body, context in
            try await handler(try WireJSON.decode(Request.self, from: body.isEmpty ? Data("{}".utf8) : body), context)
        }
    }

    public var operations: [String] { handlers.keys.sorted() }
}
