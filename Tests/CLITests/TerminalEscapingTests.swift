// The one escaping function every text output of the CLI goes through: pure, no broker.
import Testing

@testable import WarrenCLI

/// A hostile string, what a terminal must be shown instead, and the same with line breaks kept.
struct EscapeCase: Sendable, CustomTestStringConvertible {
    let name: String
    let input: String
    let oneLine: String
    let multiLine: String

    init(_ name: String, _ input: String, _ oneLine: String, multiLine: String? = nil) {
        self.name = name
        self.input = input
        self.oneLine = oneLine
        self.multiLine = multiLine ?? oneLine
    }

    var testDescription: String { name }

    static let all: [EscapeCase] = [
        EscapeCase("plain text is left alone", "order.created 42 €", "order.created 42 €"),
        EscapeCase("JSON with its own escapes is left alone", #"{"a":"x\n\u001b"}"#, #"{"a":"x\n\u001b"}"#),
        EscapeCase("clear screen (ESC[2J)", "\u{1B}[2J", #"\u{1B}[2J"#),
        EscapeCase("OSC window title ending in BEL", "\u{1B}]0;owned\u{07}", #"\u{1B}]0;owned\u{07}"#),
        EscapeCase("OSC 8 hyperlink ending in ST", "\u{1B}]8;;http://evil\u{1B}\\x\u{1B}]8;;\u{1B}\\", #"\u{1B}]8;;http://evil\u{1B}\x\u{1B}]8;;\u{1B}\"#),
        EscapeCase("NUL", "a\u{0}b", #"a\u{00}b"#),
        EscapeCase("backspace over text", "paid\u{8}\u{8}\u{8}\u{8}due", #"paid\u{08}\u{08}\u{08}\u{08}due"#),
        EscapeCase("carriage return overwrites the line", "ok\rFAILED", #"ok\rFAILED"#),
        EscapeCase("line feed forges a line", "x\nwarren: all good", #"x\nwarren: all good"#, multiLine: "x\nwarren: all good"),
        EscapeCase("tab", "a\tb", #"a\tb"#, multiLine: "a\tb"),
        EscapeCase("vertical tab and form feed", "\u{0B}\u{0C}", #"\u{0B}\u{0C}"#),
        EscapeCase("unit separator (last C0)", "\u{1F}", #"\u{1F}"#),
        EscapeCase("DEL", "\u{7F}", #"\u{7F}"#),
        EscapeCase("C1 CSI (U+009B) clears the screen too", "\u{9B}2J", #"\u{9B}2J"#),
        EscapeCase("C1 first and last", "\u{80}\u{9F}", #"\u{80}\u{9F}"#),
        EscapeCase("right-to-left override disguises a name", "invoice\u{202E}fdp.exe", #"invoice\u{202E}fdp.exe"#),
        EscapeCase("every bidi embedding and override", "\u{202A}\u{202B}\u{202C}\u{202D}", #"\u{202A}\u{202B}\u{202C}\u{202D}"#),
        EscapeCase("bidi isolates", "\u{2066}\u{2067}\u{2068}\u{2069}", #"\u{2066}\u{2067}\u{2068}\u{2069}"#),
        EscapeCase("bidi marks", "\u{200E}\u{200F}\u{061C}", #"\u{200E}\u{200F}\u{61C}"#),
        EscapeCase("a control after a combining mark", "e\u{301}\u{1B}", "e\u{301}\\u{1B}"),
        EscapeCase("just outside the ranges: space, ~, NBSP, U+2029, U+206A", " ~\u{A0}\u{2029}\u{206A}", " ~\u{A0}\u{2029}\u{206A}"),
    ]
}

@Suite("terminal escaping")
struct TerminalEscapingTests {
    @Test("text from outside is escaped so that a terminal shows it and acts on none of it", arguments: EscapeCase.all)
    func escapes(_ example: EscapeCase) {
        #expect(Terminal.escape(example.input) == example.oneLine)
        #expect(Terminal.escape(example.input, keepingLineBreaks: true) == example.multiLine)
    }

    @Test("no scalar a terminal acts on survives, whatever the input")
    func nothingSurvives() {
        // Every scalar from U+0000 to U+2FFF once, and each hostile one next to every other kind.
        let all = String(String.UnicodeScalarView((UInt32(0)...0x2FFF).compactMap { Unicode.Scalar($0) }))
        for keeping in [false, true] {
            let escaped = Terminal.escape(all, keepingLineBreaks: keeping)
            let survivors = escaped.unicodeScalars.filter { scalar in
                Terminal.needsEscape(scalar) && !(keeping && (scalar == "\n" || scalar == "\t"))
            }
            #expect(survivors.isEmpty, "left: \(survivors.map { String($0.value, radix: 16) })")
        }
        #expect(Terminal.escape("\u{1B}[2J\u{9B}\u{202E}").unicodeScalars.allSatisfy { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F })
    }
}
