/// Who learns the fate of a publish on a confirm channel: the task awaiting `publish`, or the
/// callback of `publish(…, confirmed:)`, run on the I/O thread.
enum ConfirmWaiter: Sendable {
    case task(UnsafeContinuation<Void, any Error>)
    case callback(@Sendable (Result<Void, any Error>) -> Void)

    func resume(with result: Result<Void, any Error>) {
        switch self {
        case .task(let continuation): continuation.resume(with: result)
        case .callback(let confirmed): confirmed(result)
        }
    }

    func resume() { resume(with: .success(())) }
    func resume(throwing error: any Error) { resume(with: .failure(error)) }
}

/// A publish whose confirm nobody awaits (`send` on a confirm channel) still takes a sequence number.
typealias OptionalConfirmWaiter = ConfirmWaiter?
