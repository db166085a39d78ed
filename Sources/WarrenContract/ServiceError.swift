/// The error a service returns to its caller, as it travels on the wire:
/// `{"error":{"code":"not_found","message":"no user 42"}}` with header `x-status: error`.
///
/// The codes are few and stable so that every caller (the gateway maps them to HTTP statuses)
/// can act on them; the message is for people.
public struct ServiceError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable, CaseIterable {
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

/// The body of an error reply.
struct ErrorReply: Codable {
    var error: ServiceError
}
