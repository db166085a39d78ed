public import Foundation
public import Warren
import WarrenContract

/// An error the client gets, from the gateway or from a service, always as
/// `{"error":{"code","message","requestId"}}` with the status its code stands for.
public struct GatewayError: Error, Sendable, Equatable {
    public var status: Int
    public var code: String
    public var message: String
    /// Extra response headers (`Allow`, `Retry-After`, `WWW-Authenticate`).
    public var headers: [(String, String)] = []

    public init(status: Int, code: String, message: String, headers: [(String, String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func == (lhs: GatewayError, rhs: GatewayError) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code && lhs.message == rhs.message
    }

    public static func invalid(_ message: String) -> GatewayError { .init(status: 400, code: "invalid", message: message) }
    public static func unauthorized(_ message: String) -> GatewayError {
        .init(status: 401, code: "unauthorized", message: message, headers: [("WWW-Authenticate", "Bearer")])
    }
    public static func forbidden(_ message: String) -> GatewayError { .init(status: 403, code: "forbidden", message: message) }
    public static func notFound(_ message: String) -> GatewayError { .init(status: 404, code: "not_found", message: message) }
    /// A service's reply broke the reply format (not JSON, an error body not in the error
    /// format, no valid `x-status`): never passed on as it came.
    public static func badGateway(_ message: String) -> GatewayError { .init(status: 502, code: "bad_gateway", message: message) }

    /// A service's error reply, by its code: the table of the HTTP API's contract.
    public init(_ error: ServiceError) {
        let status: Int
        switch error.code {
        case .invalid: status = 400
        case .unauthorized: status = 401
        case .forbidden: status = 403
        case .notFound: status = 404
        case .conflict: status = 409
        case .internal: status = 500
        // 503 only for "certainly not executed"; an unknown outcome is a timeout (504).
        case .unavailable: status = 503
        case .timeout: status = 504
        }
        self.init(status: status, code: error.code.rawValue, message: error.message)
    }

    /// A failed call. A `timeout` (the client's own, not a service's error reply) gets one
    /// sentence in the HTTP client's terms (the client's wording speaks of AMQP message ids): for
    /// a read, that it can be retried; for an operation that may have effects, that the outcome
    /// is unknown and how to retry safely — with the same key if one was sent. Other errors as
    /// `init(_:)`.
    public init(_ error: ServiceError, method: String, idempotencyKey: String?) {
        self.init(error)
        guard error.code == .timeout else { return }
        if method == "GET" || method == "HEAD" {
            message = "no answer came in time, so the outcome is unknown; a \(method) changes nothing and can be retried"
        } else if let idempotencyKey {
            message = "no answer came in time, so the outcome is unknown: retry with the same Idempotency-Key '\(idempotencyKey)', which returns the answer if the request ran instead of running it twice"
        } else {
            message = "no answer came in time, so the outcome is unknown and the request may have run: check before retrying, and send an Idempotency-Key header next time so that a retry can never run it twice"
        }
    }

    /// The JSON body, with the request id so a user can quote it and an operator find the logs.
    public func body(requestID: String) -> Data {
        var out = #"{"error":{"code":"#
        MessageBody.appendString(code, to: &out)
        out += #","message":"#
        MessageBody.appendString(message, to: &out)
        out += #","requestId":"#
        MessageBody.appendString(requestID, to: &out)
        out += "}}"
        return Data(out.utf8)
    }
}
