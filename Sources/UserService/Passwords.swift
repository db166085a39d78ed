import HummingbirdBcrypt
import NIOPosix
import Warren

/// Salted bcrypt hashes, computed off the cooperative thread pool (on SwiftNIO's blocking pool,
/// `NIOThreadPool.singleton`): one hash takes tens of milliseconds by design and would otherwise
/// stall every other request on a 2-core machine.
///
/// bcrypt's C code reads a password as a C string of at most 72 bytes: it stops at the first
/// NUL and ignores what follows byte 72. A password it would cut is never hashed or checked
/// here (`isKeptExactly`), so two passwords equal only in their first 72 bytes, or before a
/// NUL, never match each other. The request types refuse them first, naming the field.
struct Passwords: Sendable {
    /// log2 of bcrypt's rounds: 12 in production, lower only to make tests quick.
    let cost: UInt8
    /// Checked when the email is unknown, so that an unknown email and a wrong password take
    /// the same time and cannot be told apart.
    private let decoy: String

    /// bcrypt's bound: what its C code reads of a password.
    static let maxBytes = 72

    init(cost: UInt8) {
        self.cost = min(max(cost, 4), 31)
        decoy = Bcrypt.hash("not anyone's password", cost: self.cost)
    }

    /// `BCRYPT_COST` read strictly: unset is 12; anything but a whole number from 4 to 31 stops
    /// the start (bcrypt itself traps outside that range, and a typo must not weaken the hashes).
    static func cost(_ text: String?) throws(ServiceError) -> UInt8 {
        guard let text, !text.isEmpty else { return 12 }
        guard let cost = UInt8(text), (4...31).contains(cost) else {
            throw .invalid("BCRYPT_COST='\(text)' must be a whole number from 4 to 31 (log2 of bcrypt's rounds; 12 is the default)")
        }
        return cost
    }

    /// True when bcrypt reads all of `password`: at most 72 bytes and no NUL.
    static func isKeptExactly(_ password: String) -> Bool {
        password.utf8.count <= maxBytes && !password.utf8.contains(0)
    }

    func hash(_ password: String) async throws(ServiceError) -> String {
        guard Self.isKeptExactly(password) else {
            throw .invalid("field 'password' must be at most 72 bytes and contain no NUL: bcrypt would cut it")
        }
        return try await offload { [cost] in Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, hash: String?) async throws(ServiceError) -> Bool {
        // A password bcrypt would cut is checked against the decoy (same time) and never matches.
        let exact = Self.isKeptExactly(password)
        let matches = try await offload { [decoy] in Bcrypt.verify(exact ? password : "", hash: exact ? hash ?? decoy : decoy) }
        return matches && exact && hash != nil
    }

    /// `work` on the blocking pool. It throws only when the pool refuses the work (the request's
    /// task was cancelled first): the password was then not checked, so the answer is `unavailable`.
    private func offload<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws(ServiceError) -> T {
        do {
            return try await NIOThreadPool.singleton.runIfActive(work)
        } catch {
            throw .unavailable("the password could not be checked now (\(error)); nothing was done")
        }
    }
}
