import Foundation
import WarrenContract

/// Where output goes: results to stdout, everything for people (progress, warnings, errors) to
/// stderr, so that `warren … --json | jq` sees only JSON. Writes are unbuffered: `events tail`
/// must show a line the moment it arrives.
///
/// Text for people passes through `escape(_:keepingLineBreaks:)` here, at the sink, so nothing
/// printed can drive the terminal; pieces of a one-line layout that came from outside are escaped
/// where they are put in (`escape(_:)`), so that a line break in them cannot forge a line either.
enum Terminal {
    static var stdoutIsTTY: Bool { isatty(STDOUT_FILENO) == 1 }
    static var stderrIsTTY: Bool { isatty(STDERR_FILENO) == 1 }
    static var stdinIsTTY: Bool { isatty(STDIN_FILENO) == 1 }

    static func out(_ line: String) {
        outRaw(Data((escape(line, keepingLineBreaks: true) + "\n").utf8))
    }

    /// Bytes as they are: only for `--json` output, which scripts read and which is never escaped.
    /// When the reader has gone (`warren dlq list | head -2`), `warren` ends as a program killed
    /// by SIGPIPE does (status 141 in a shell), which is what pipelines expect; SwiftNIO ignores
    /// SIGPIPE for the whole process, so the write fails instead, and the non-throwing
    /// `FileHandle.write` would trap on that.
    static func outRaw(_ data: Data) {
        do {
            try FileHandle.standardOutput.write(contentsOf: data)
        } catch {
            signal(SIGPIPE, SIG_DFL)
            raise(SIGPIPE)
            exit(141)
        }
    }

    /// Text for people; a stderr nobody reads any more loses it (there is nowhere to say so).
    static func note(_ line: String) {
        try? FileHandle.standardError.write(contentsOf: Data((escape(line, keepingLineBreaks: true) + "\n").utf8))
    }

    /// A question on stderr, the answer typed on the same line.
    static func prompt(_ question: String) {
        try? FileHandle.standardError.write(contentsOf: Data(escape(question, keepingLineBreaks: true).utf8))
    }

    static func error(_ message: String) {
        note("warren: \(message)")
    }

    /// Rewrites the current stderr line (progress bars).
    static func status(_ line: String) {
        try? FileHandle.standardError.write(contentsOf: Data(("\r\u{1B}[2K" + escape(line)).utf8))
    }

    /// `value` as one line of JSON with sorted keys (stable for diffs and tests), unescaped.
    static func json(_ value: JSONValue) {
        outRaw(Data((value.jsonText(pretty: false) + "\n").utf8))
    }
}
