import Dispatch
import HummingbirdBcrypt

/// Salted bcrypt hashes, computed off the cooperative thread pool: one hash takes tens of
/// milliseconds by design and would otherwise stall every other request on a 2-core machine.
struct Passwords: Sendable {
    /// log2 of bcrypt's rounds: 12 in production, lower only to make tests quick.
    let cost: UInt8
    /// Checked when the email is unknown, so that an unknown email and a wrong password take
    /// the same time and cannot be told apart.
    private let decoy: String

    init(cost: UInt8) {
        self.cost = min(max(cost, 4), 31)
        decoy = Bcrypt.hash("not anyone's password", cost: self.cost)
    }

    func hash(_ password: String) async -> String {
        await offload { [cost] in Bcrypt.hash(password, cost: cost) }
    }

    func verify(_ password: String, hash: String?) async -> Bool {
        let matches = await offload { [decoy] in Bcrypt.verify(password, hash: hash ?? decoy) }
        return matches && hash != nil
    }

    private func offload<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: work()) }
        }
    }
}
