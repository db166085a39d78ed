import Foundation
import Synchronization

/// Progress of a replay: a bar with rate and ETA redrawn on a terminal, a plain line every few
/// seconds otherwise (logs, CI). The total is known once counted (terminal only) or from `--limit`.
final class ReplayProgress: Sendable {
    private let started = ContinuousClock.now
    private let onTerminal = Terminal.stderrIsTTY
    private let knownTotal = Atomic<Int>(-1)
    private let state = Mutex<(done: Int, lastShown: ContinuousClock.Instant?)>((0, nil))

    var isTerminal: Bool { onTerminal }

    func setTotal(_ total: Int) { knownTotal.store(total, ordering: .relaxed) }

    var elapsed: Duration { ContinuousClock.now - started }

    func advance(to done: Int) {
        let now = ContinuousClock.now
        let interval: Duration = onTerminal ? .milliseconds(100) : .seconds(2)
        let show = state.withLock { state -> Bool in
            state.done = done
            if let last = state.lastShown, now - last < interval { return false }
            state.lastShown = now
            return true
        }
        if show { draw(done: done) }
    }

    func finish(done: Int) {
        draw(done: done)
        if onTerminal { Terminal.note("") }
    }

    private func draw(done: Int) {
        let seconds = max(elapsed.seconds, 0.001)
        let rate = Double(done) / seconds
        let total = knownTotal.load(ordering: .relaxed)
        var line = "replayed \(done)"
        if total >= 0 {
            line += "/\(total)"
            if onTerminal {
                let width = 30
                // done × width could overflow for a count from a hostile store: then it is full.
                let (scaled, overflow) = done.multipliedReportingOverflow(by: width)
                let filled = total == 0 || overflow ? width : min(width, scaled / total)
                line = "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] " + line
            }
        }
        // In the first second the rate mostly measures the start-up (connecting, the first page):
        // an ETA from it would be off by orders of magnitude.
        if seconds >= 1 || done == total {
            line += String(format: "  %.0f events/s", rate)
            if total >= 0, rate > 0 { line += String(format: "  ETA %.0fs", Double(max(total - done, 0)) / rate) }
        }
        if onTerminal { Terminal.status(line) } else { Terminal.note(line) }
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
