public import Foundation

/// The error a service returns to its caller, as it travels on the wire:
/// `{"error":{"code":"not_found","message":"no user 42"}}` with header `x-status: error`
/// (schemas/warren/error-reply.schema.json).
///
/// The codes are few and stable so that every caller (the gateway maps them to HTTP statuses)
/// can act on them; the message is for people.
public struct ServiceError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Code: String, WireEnum {
        case notFound = "not_found"
        case invalid
        case conflict
        case unauthorized
        case forbidden
        case unavailable
        case timeout
        case `internal`
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func notFound(_ message: String) -> ServiceError { .init(.notFound, message) }
    public static func invalid(_ message: String) -> ServiceError { .init(.invalid, message) }
    public static func conflict(_ message: String) -> ServiceError { .init(.conflict, message) }
    public static func unauthorized(_ message: String) -> ServiceError { .init(.unauthorized, message) }
    public static func forbidden(_ message: String) -> ServiceError { .init(.forbidden, message) }
    public static func unavailable(_ message: String) -> ServiceError { .init(.unavailable, message) }
    public static func timeout(_ message: String) -> ServiceError { .init(.timeout, message) }
    public static func `internal`(_ message: String) -> ServiceError { .init(.internal, message) }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The body of an error reply, `{"error":{"code":"…","message":"…"}}`: written by the
/// responder, read by every caller (the runtime's RPC client, the gateway, the CLI) through
/// `decode(_:operation:)`, so that all of them read a hostile body the same way.
public struct ErrorReply: Codable, Sendable, Equatable {
    public var error: ServiceError

    public init(error: ServiceError) { self.error = error }

    /// The error's JSON body. Cannot fail: two strings.
    public var body: Data {
        (try? WireJSON.encode(self)) ?? Data(#"{"error":{"code":"internal","message":"unencodable error"}}"#.utf8)
    }

    /// The `ServiceError` an error reply's body carries. Tolerant of what clients in other
    /// languages send: extra fields are ignored and a missing or non-string `message` is the
    /// code itself. A body that is not a JSON object with a known `code` under `error` (not
    /// JSON, an unknown code, a number for a code, …) is `internal`, naming `operation`:
    /// the caller learns the reply broke the contract, never a guessed error.
    public static func decode(_ body: Data, operation: String) -> ServiceError {
        guard let error = decoded(body) else {
            let start = String(decoding: body.prefix(80), as: UTF8.self)
            return .internal("\(operation) replied with an error that is not in the error format (\(body.count) bytes: \(start.debugDescription))")
        }
        return error
    }

    /// The `ServiceError` an error reply's body carries, as `decode(_:operation:)` reads it, or
    /// nil when the body is not in the error format (for a caller that answers that otherwise).
    public static func decoded(_ body: Data) -> ServiceError? {
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
            let error = object["error"] as? [String: Any], let codeText = error["code"] as? String,
            let code = ServiceError.Code(rawValue: codeText)
        else { return nil }
        return ServiceError(code, bounded(error["message"] as? String ?? codeText))
    }

    /// The most of a service's error message passed on (Unicode scalars): a message is for a
    /// person, and a service must not be able to make the gateway answer with megabytes.
    public static let maxMessageLength = 2_000

    /// `message` cut to `maxMessageLength` Unicode scalars, with a marker that says how much
    /// was left out (`… (98000 more characters)`); a shorter one unchanged. For every place
    /// that passes on text a service or a broker wrote, in text and JSON alike.
    public static func bounded(_ message: String) -> String {
        guard message.unicodeScalars.count > maxMessageLength else { return message }
        var scalars = String.UnicodeScalarView()
        scalars.append(contentsOf: message.unicodeScalars.prefix(maxMessageLength))
        return String(scalars) + "… (\(message.unicodeScalars.count - maxMessageLength) more characters)"
    }
}
