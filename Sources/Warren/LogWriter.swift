import Dispatch
import Foundation
import Synchronization

/// Writes log lines to a file descriptor (stdout) from a thread of its own, so that logging
/// never blocks the thread that logs: a broker connection's I/O thread runs handlers
/// (`HANDLER_EXECUTOR`) and must not wait for a log collector that stopped reading, or the
/// broker drops the connection when its heartbeats stop.
///
/// Lines wait in a buffer of at most `capacity` bytes; while it is full (nothing reads stdout),
/// new lines are dropped and counted, and once writing resumes a warning line says how many.
/// At exit (`atexit`) what is buffered is written, waiting at most 2 s for a stalled reader.
final class LogWriter: Sendable {
    /// The process's writer; at exit it writes what is buffered, waiting at most 2 s.
    static let standardOutput: LogWriter = {
        let writer = LogWriter(descriptor: FileHandle.standardOutput, capacity: 4 << 20)
        atexit { LogWriter.standardOutput.flush(waiting: .seconds(2)) }
        return writer
    }()

    private struct State {
        var lines: [Data] = []
        var bytes = 0
        var dropped = 0
        var writing = false
    }

    private let state = Mutex(State())
    private let pending = DispatchSemaphore(value: 0)
    private let written = DispatchSemaphore(value: 0)
    private let descriptor: FileHandle
    let capacity: Int

    init(descriptor: FileHandle, capacity: Int) {
        self.descriptor = descriptor
        self.capacity = capacity
        let thread = Thread { [self] in self.run() }
        thread.name = "warren-log"
        thread.start()
    }

    /// Queues one line (with its newline); drops it if the buffer is full.
    func write(_ line: Data) {
        let queued = state.withLock { state in
            guard state.bytes + line.count <= capacity else {
                state.dropped += 1
                return false
            }
            state.lines.append(line)
            state.bytes += line.count
            return true
        }
        if queued { pending.signal() }
    }

    private func run() {
        var batch: [Data] = []
        while true {
            pending.wait()
            let dropped: Int = state.withLock { state in
                swap(&state.lines, &batch)
                state.bytes = 0
                state.writing = true
                defer { state.dropped = 0 }
                return state.dropped
            }
            for line in batch { descriptor.write(line) }
            batch.removeAll(keepingCapacity: true)
            if dropped > 0, let note = JSONLogHandler.droppedLinesNote(dropped) { descriptor.write(note) }
            state.withLock { $0.writing = false }
            written.signal()
        }
    }

    /// Waits until what is buffered now has been written, at most `limit`.
    func flush(waiting limit: Duration) {
        let deadline = DispatchTime.now() + .milliseconds(Int(limit / .milliseconds(1)))
        while state.withLock({ !$0.lines.isEmpty || $0.writing }) {
            pending.signal()
            guard written.wait(timeout: deadline) == .success else { return }
        }
    }
}
