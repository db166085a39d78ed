import Foundation

/// Where output goes: results to stdout, everything for people (progress, warnings, errors) to
/// stderr, so that `warren … --json | jq` sees only JSON. Writes are unbuffered: `events tail`
/// must show a line the moment it arrives.
enum Terminal {
    static var stdoutIsTTY: Bool { isatty(STDOUT_FILENO) == 1 }
    static var stderrIsTTY: Bool { isatty(STDERR_FILENO) == 1 }
    static var stdinIsTTY: Bool { isatty(STDIN_FILENO) == 1 }

    static func out(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func outRaw(_ data: Data) {
        FileHandle.standardOutput.write(data)
    }

    static func note(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func error(_ message: String) {
        note("warren: \(message)")
    }

    /// Rewrites the current stderr line (progress bars).
    static func status(_ line: String) {
        FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8))
    }

    /// `value` as one line of JSON with sorted keys (stable for diffs and tests).
    static func json(_ value: JSONValue) {
        out(value.jsonText(pretty: false))
    }
}
