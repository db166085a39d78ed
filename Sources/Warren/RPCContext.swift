import Foundation
public import Logging
import WarrenContract

/// What a handler knows about the request it serves, and the means to call further with the
/// same correlation id, the request as cause and the same deadline.
///
/// Named for the RPC it serves, beside `RPCClient`, `RPCResponder` and `RPCHandlers` (gRPC
/// Swift's `ServerContext` plays the same part); not `RequestContext`, which is Hummingbird's
/// protocol for HTTP handlers, and not a message context, since event handlers get `Event`.
public struct RPCContext: Sendable {
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
