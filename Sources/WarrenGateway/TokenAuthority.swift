public import Foundation
import JWTKit
import Synchronization
import WarrenContract

/// Who sent a request, as its verified token says.
public struct Caller: Sendable, Equatable {
    public var subject: String
    public var isAdmin: Bool
}

/// The claims of Warren's access tokens: the user id, the role, and the expiry.
struct AccessClaims: JWTPayload {
    var sub: SubjectClaim
    var role: String
    var exp: ExpirationClaim
    var iat: IssuedAtClaim

    func verify(using algorithm: some JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        guard role == "user" || role == "admin" else { throw JWTError.claimVerificationFailure(failedClaim: nil, reason: "unknown role") }
    }
}

/// Signs and checks the gateway's access tokens (HS256 with the secret from `JWT_SECRET`).
///
/// The header's `alg` is checked before anything else: jwt-kit would verify an `RS256`-labelled
/// token with the HMAC key it has, and a token must never choose how it is verified.
public struct TokenAuthority: Sendable {
    /// Used when `JWT_SECRET` is unset outside production; printed in warnings, refused in production.
    public static let developmentSecret = "warren-DEVELOPMENT-ONLY-secret-do-not-use-in-production"

    /// True for the development secret in any spelling: letter case, separators, spaces, with
    /// something added around it (`…-production-2`), reversed, or any part of it of 16 letters or more
    /// (a cut or pasted piece of a published secret is no secret). Only letters and digits
    /// are compared.
    public static func isDevelopmentSecret(_ secret: String) -> Bool {
        func letters(_ text: String) -> [Unicode.Scalar] {
            text.lowercased().unicodeScalars.filter { $0.properties.isAlphabetic || ("0"..."9").contains($0) }
        }
        let candidate = letters(secret)
        let forwards = String(String.UnicodeScalarView(candidate))
        let backwards = String(String.UnicodeScalarView(candidate.reversed()))
        let known = letters(developmentSecret)
        // 16 letters: long enough that an ordinary phrase ("…in production") is no match.
        let piece = 16
        return (0...(known.count - piece)).contains { start in
            let part = String(String.UnicodeScalarView(known[start..<(start + piece)]))
            return forwards.contains(part) || backwards.contains(part)
        }
    }

    public let lifetime: Duration
    private let keys: JWTKeyCollection
    private let verified = VerifiedTokens()

    public init(secret: String, lifetime: Duration) async {
        self.lifetime = lifetime
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    }

    /// A signed token for a user the user service has authenticated.
    public func issue(subject: String, role: String, now: Date = Date()) async throws -> String {
        let claims = AccessClaims(
            sub: .init(value: subject), role: role, exp: .init(value: now + lifetime.timeInterval), iat: .init(value: now))
        return try await keys.sign(claims)
    }

    /// The caller of an `Authorization: Bearer …` header. Every failure is 401 with a message
    /// that says what is wrong with the token, never why the signature did not match.
    public func verify(authorization: String?) async throws(GatewayError) -> Caller {
        let token = try Self.bearerToken(authorization)
        if let caller = verified.caller(token) { return caller }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = Self.decodeBase64URL(parts[0]),
            let fields = try? JSONSerialization.jsonObject(with: header) as? [String: Any]
        else {
            throw .unauthorized("the token is malformed: expected three base64url parts, header.payload.signature")
        }
        guard fields["alg"] as? String == "HS256" else {
            throw .unauthorized("the token's algorithm must be HS256, not '\(fields["alg"] ?? "none")'")
        }
        let claims: AccessClaims
        do {
            claims = try await keys.verify(token, as: AccessClaims.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw .unauthorized("the token has expired or its claims are invalid: get a new one from POST /auth/token")
        } catch {
            throw .unauthorized("the token is invalid: its signature or payload could not be verified")
        }
        let caller = Caller(subject: claims.sub.value, isAdmin: claims.role == "admin")
        verified.remember(token, caller, until: claims.exp.value)
        return caller
    }

    /// The caller of a token already verified (the common case: a client sends the same token
    /// with every request), without a task; nil when the token must be verified by `verify`.
    /// Throws the same 401 as `verify` for a missing or malformed header.
    public func cachedCaller(authorization: String?) throws(GatewayError) -> Caller? {
        verified.caller(try Self.bearerToken(authorization))
    }

    /// The token of `Authorization: Bearer <token>`, or a 401 saying what is wrong.
    static func bearerToken(_ authorization: String?) throws(GatewayError) -> String {
        guard let authorization, !authorization.isEmpty else {
            throw .unauthorized("this route needs a token: send 'Authorization: Bearer <access_token>' (POST /auth/token gives one)")
        }
        // Plain Substring work: Foundation's trimming bridges through NSString and cost more
        // than verifying the signature.
        let scheme = authorization.prefix(7)
        guard scheme.utf8.count == 7, scheme.lowercased() == "bearer " else {
            throw .unauthorized("the Authorization header must be 'Bearer <access_token>'")
        }
        var text = authorization.dropFirst(7)
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        // A JWS in compact form is base64url without padding, segments joined by dots (RFC 7515).
        // Other spellings of the same bytes (`=` appended, `+` for `-`) are refused: otherwise one
        // token has endless spellings, each verified anew and cached apart.
        guard text.utf8.allSatisfy(isCompactJWSByte) else {
            throw .unauthorized("the token must be a JWT in compact form: base64url segments (A-Z a-z 0-9 - _) joined by dots, without padding")
        }
        return String(text)
    }

    private static func isCompactJWSByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }

    static func decodeBase64URL(_ text: Substring) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// Tokens already verified, by their exact text, until they expire: a client sends the same
/// token with every request, and checking it again (header, signature, JSON payload, through
/// jwt-kit's actor) was the largest cost of a request after logging. Bounded: emptied when full.
final class VerifiedTokens: Sendable {
    private let tokens = Mutex<[String: (caller: Caller, expires: Date)]>([:])
    private let capacity: Int

    init(capacity: Int = 10_000) {
        self.capacity = capacity
    }

    func caller(_ token: String, now: Date = Date()) -> Caller? {
        tokens.withLock { tokens in
            guard let entry = tokens[token] else { return nil }
            guard entry.expires > now else {
                tokens[token] = nil
                return nil
            }
            return entry.caller
        }
    }

    func remember(_ token: String, _ caller: Caller, until expires: Date) {
        tokens.withLock { tokens in
            if tokens.count >= capacity { tokens.removeAll(keepingCapacity: true) }
            tokens[token] = (caller, expires)
        }
    }
}
