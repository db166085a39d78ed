public import Foundation
public import Tracing
public import Warren

/// How the gateway reaches a service: one request message to `<service>.rpc`, one reply or a
/// failure. `RPCClient` is the real one (over the broker); tests give the responder a caller
/// of their own, so that routing, authorization and error mapping run in process.
///
/// The reply is an associated type, so that `RPCClient` conforms as it is: wrapping its
/// completion in a converting closure would cost an allocation per request on the hot path
/// (measured with `warren-bench gateway`, before and after).
public protocol ServiceCaller: Sendable {
    associatedtype Reply: ServiceReply

    /// Sends `operation` with `body` and calls `completion` exactly once, on any thread, with the
    /// reply or the failure (`timeout`, `unavailable`, …). It must not block. `timeout` nil is
    /// the caller's default; the envelope's deadline, if earlier, wins. `context` is the trace
    /// context the request message carries.
    func call(
        _ operation: String, body: Data, timeout: Duration?, envelope: Envelope, context: ServiceContext?,
        completion: @escaping @Sendable (Result<Reply, ServiceError>) -> Void)
}

/// What the gateway reads of a reply: whether it is an error reply (`x-status: error`) and its body.
public protocol ServiceReply: Sendable {
    var isError: Bool { get }
    var body: Data { get }
}

extension RPCClient: ServiceCaller {}
extension RPCClient.Reply: ServiceReply {}

extension ServiceCaller {
    /// `call` awaited, under the current trace context (when tracing is on): for the paths that
    /// run in a task anyway (first sight of a token, owner lookups, issuing a token).
    func call(_ operation: String, body: Data, timeout: Duration?, envelope: Envelope) async -> Result<Reply, ServiceError> {
        let context = MessageTracing.isEnabled ? ServiceContext.current : nil
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<Reply, ServiceError>, Never>) in
            call(operation, body: body, timeout: timeout, envelope: envelope, context: context) { continuation.resume(returning: $0) }
        }
    }
}

/// A reply as plain values: what the gateway's task paths keep of any caller's reply, and what
/// an in-process caller (a test's) answers with.
public struct PlainReply: ServiceReply {
    public var isError: Bool
    public var body: Data

    public init(isError: Bool, body: Data) {
        self.isError = isError
        self.body = body
    }
}
