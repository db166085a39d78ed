extension JobQueue {
    /// Runs `body` on the I/O thread and returns its result to the awaiting task.
    func perform<T: Sendable>(_ body: @escaping @Sendable (IOLoop) throws(AMQPError) -> T) async throws -> T {
        try await withUnsafeThrowingContinuation { continuation in
            submit(
                Job(
                    run: { loop in
                        do throws(AMQPError) {
                            continuation.resume(returning: try body(loop))
                        } catch {
                            continuation.resume(throwing: error)
                        }
                    },
                    fail: { continuation.resume(throwing: $0) }))
        }
    }
}
