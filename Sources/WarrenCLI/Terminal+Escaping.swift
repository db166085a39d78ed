extension Terminal {
    /// `text` made safe to print on a terminal: every character that a terminal would act on
    /// instead of showing is written as a visible escape, so a message body, header, queue name or
    /// error text from outside can neither drive the terminal (`ESC[2J` clears it, an OSC sets
    /// the title or a link) nor disguise what it says (bidi overrides reorder what is shown).
    ///
    /// Escaped: C0 controls (U+0000–U+001F), DEL (U+007F), C1 controls (U+0080–U+009F, where
    /// U+009B is a CSI of its own), and the bidi controls U+061C, U+200E, U+200F, U+202A–U+202E
    /// and U+2066–U+2069. `\n`, `\r` and `\t` become `\n`, `\r`, `\t`; the others `\u{1B}`
    /// (hex, as in Swift). With `keepingLineBreaks`, `\n` and `\t` stay as they are: for
    /// multi-line text of our own making (pretty JSON, messages) whose pieces from outside were
    /// already escaped; `\r` is escaped even then, as it would overwrite the line.
    ///
    /// A backslash is left alone, so JSON shows as JSON: the escapes mark characters, they are not
    /// a reversible encoding. `--json` output is never passed through here.
    static func escape(_ text: String, keepingLineBreaks: Bool = false) -> String {
        // Most text has nothing to escape: no copy then.
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepingLineBreaks: keepingLineBreaks) }) else { return text }
        var escaped = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar, keepingLineBreaks: keepingLineBreaks) else {
                escaped.append(scalar)
                continue
            }
            switch scalar {
            case "\n": escaped.append(contentsOf: #"\n"#.unicodeScalars)
            case "\r": escaped.append(contentsOf: #"\r"#.unicodeScalars)
            case "\t": escaped.append(contentsOf: #"\t"#.unicodeScalars)
            default:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                escaped.append(contentsOf: "\\u{\(hex.count < 2 ? "0" + hex : hex)}".unicodeScalars)
            }
        }
        return String(escaped)
    }

    /// A value the user gave or that came from outside (a queue name), escaped and in single
    /// quotes, so that one with leading or trailing spaces (` users.rpc`) shows as what it is.
    static func quoted(_ text: String) -> String {
        "'" + escape(text) + "'"
    }

    /// Whether a terminal would act on `scalar` (or reorder text around it) rather than show it.
    static func needsEscape(_ scalar: Unicode.Scalar, keepingLineBreaks: Bool = false) -> Bool {
        switch scalar.value {
        case 0x0A, 0x09: !keepingLineBreaks
        case 0x00...0x1F, 0x7F, 0x80...0x9F: true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
