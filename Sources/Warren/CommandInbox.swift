import Crypto
public import Foundation
public import Logging
import ServiceLifecycle

/// A request to an operation with effects (registered with `RPCHandlers.onCommand`), as the
/// command inbox keys it: a redelivery, or a client's retry with the same `message_id`, is the
/// same command and must not take effect twice.
public struct Command: Sendable, Equatable {
    /// The request's AMQP `message_id`: the key of the inbox.
    public let messageID: String
    public let operation: String
    /// Hex SHA-256 of the operation and the request body as JSON in one form (keys sorted, no
    /// spaces): a reused id with a different request is refused as `conflict` rather than
    /// answered with another request's reply, while a client's retry that writes the same JSON
    /// differently (another key order, spaces) is the same request.
    public let fingerprint: String

    public init(messageID: String, operation: String, body: Data) {
        self.messageID = messageID
        self.operation = operation
        self.fingerprint = Self.sha256Hex([Data(operation.utf8), Self.canonicalJSON(body)])
    }

    /// `body` re-written with sorted keys and no insignificant white space; a body that is not
    /// JSON as it is (the handler refuses it anyway).
    static func canonicalJSON(_ body: Data) -> Data {
        guard let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]),
            let canonical = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed])
        else { return body }
        return canonical
    }

    /// The `message_id` of a request derived from a client's idempotency key and what scopes
    /// it (caller, method, path), so that the client's retry — through any gateway instance —
    /// reaches the service as the same command. Fixed length (69 characters), whatever the key.
    public static func derivedMessageID(idempotencyKey: String, scope: [String]) -> String {
        "idem-" + sha256Hex((scope + [idempotencyKey]).map { Data($0.utf8) })
    }

    /// The parts are length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    private static func sha256Hex(_ parts: [Data]) -> String {
        var hash = SHA256()
        for part in parts {
            withUnsafeBytes(of: UInt64(part.count).bigEndian) { hash.update(bufferPointer: $0) }
            hash.update(data: part)
        }
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in hash.finalize() {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }
}

/// The reply a command got, kept by the service in the same transaction as the command's effects.
public struct StoredReply: Sendable, Equatable {
    public var operation: String
    public var fingerprint: String
    /// The ok reply's JSON body, as it was sent.
    public var body: Data

    public init(operation: String, fingerprint: String, body: Data) {
        self.operation = operation
        self.fingerprint = fingerprint
        self.body = body
    }
}

/// Where a service keeps the replies of the commands it executed, by `message_id`
/// (`SQLiteCommandInbox` in WarrenSQLite). The responder looks a command up before running its
/// handler and answers a redelivery from here; the handler's store writes the reply inside the
/// transaction of the effects, so "committed" always means "effect and reply stored".
public protocol CommandInbox: Sendable {
    /// The reply stored for `messageID`, or nil if no command with that id committed.
    func storedReply(for messageID: String) async throws -> StoredReply?
}

/// A command inbox that forgets replies older than its retention, as both backends' inboxes
/// do; `pruneHourly` is their service's `run()`.
public protocol PrunedCommandInbox: CommandInbox {
    /// Deletes the replies stored before `now` minus the retention; returns how many.
    func prune(now: Date) async throws -> Int
}

extension PrunedCommandInbox {
    /// Prunes once an hour until graceful shutdown (any instance of a service sharing the
    /// database may; deleting twice is harmless). A failure is logged and tried again next hour.
    public func pruneHourly(logger: Logger, describe: (any Error) -> String = { "\($0)" }) async {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                let removed = try await prune(now: Date())
                if removed > 0 { logger.debug("pruned the command inbox", metadata: ["removed": "\(removed)"]) }
            } catch {
                logger.warning("could not prune the command inbox", metadata: ["error": "\(describe(error))"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
        }
    }
}

/// Thrown by a store (from inside its transaction, which then rolls back) when the command's
/// id is already in the inbox: another delivery of the same command committed first. The
/// responder then answers with the stored reply.
public struct CommandAlreadyApplied: Error, Sendable, CustomStringConvertible {
    public let messageID: String
    public init(messageID: String) { self.messageID = messageID }
    public var description: String { "command \(messageID) was already applied" }
}
