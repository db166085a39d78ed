import Foundation
public import Logging
import Synchronization

/// One JSON object per line on stdout, for log collectors in production:
/// `{"ts":"2026-11-29T09:34:53.541Z","level":"info","label":"users","msg":"serving","correlation_id":"…",…}`.
///
/// `ts` is RFC 3339 in UTC with milliseconds; a metadata value that is a number (an integer or
/// a decimal written as Swift writes it, e.g. `"attempt": "\(3)"`) is a JSON number, except
/// under an identifier's key (`id`, `…_id`: a request id `123` stays text, so that a field keeps
/// one type in a log store whatever the client sent); nested
/// metadata is a JSON object or array; newlines in messages are escaped, so one event is always
/// one line. The metadata provider's values (`trace_id`, `span_id` inside a span) are added.
/// Lines are written by `LogWriter`'s thread: logging never blocks (a full buffer drops lines
/// and says so).
public struct JSONLogHandler: LogHandler {
    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level = .info
    private let label: String

    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        guard var line = Self.line(event: event, label: label, metadata: metadata, provided: metadataProvider?.get(), at: Date()) else { return }
        line.append(UInt8(ascii: "\n"))
        LogWriter.standardOutput.write(line)
    }

    /// The warning the log writer adds after dropping lines (stdout was not read).
    static func droppedLinesNote(_ count: Int) -> Data? {
        let event = LogEvent(
            level: .warning, message: "\(count) log lines were dropped: standard output was not read while the buffer was full",
            metadata: ["dropped_lines": "\(count)"], source: "Warren", file: #fileID, function: #function, line: #line)
        guard var line = line(event: event, label: "warren.log", metadata: [:], provided: nil, at: Date()) else { return nil }
        line.append(UInt8(ascii: "\n"))
        return line
    }

    /// The JSON object of one event, without the newline; nil only if it cannot be encoded.
    static func line(event: LogEvent, label: String, metadata: Logger.Metadata, provided: Logger.Metadata?, at time: Date) -> Data? {
        var object: [String: Any] = [:]
        for (key, value) in provided ?? [:] { object[key] = json(value, key: key) }
        for (key, value) in metadata { object[key] = json(value, key: key) }
        for (key, value) in event.metadata ?? [:] { object[key] = json(value, key: key) }
        object["ts"] = time.formatted(timeFormat)
        object["level"] = event.level.rawValue
        object["label"] = label
        object["msg"] = "\(event.message)"
        return try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    }

    private static func json(_ value: Logger.Metadata.Value, key: String) -> Any {
        let isIdentifier = key == "id" || key.hasSuffix("_id")
        switch value {
        case .string(let text):
            if !isIdentifier, let number = number(text) { return number }
            return text
        case .stringConvertible(let convertible):
            let text = "\(convertible)"
            if !isIdentifier, let number = number(text) { return number }
            return text
        case .dictionary(let dictionary): return dictionary.map { (key: $0.key, value: json($0.value, key: $0.key)) }.reduce(into: [String: Any]()) { $0[$1.key] = $1.value }
        case .array(let array): return array.map { json($0, key: key) }
        }
    }

    /// `text` as a JSON number when it is exactly the way Swift writes one (`3`, `-12`, `0.25`):
    /// an id like `007` or `1e3` stays text, so nothing changes in the round trip.
    static func number(_ text: String) -> NSNumber? {
        guard let first = text.utf8.first, first == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
            return nil
        }
        if let integer = Int64(text), String(integer) == text { return NSNumber(value: integer) }
        if text.contains("."), let double = Double(text), double.isFinite, "\(double)" == text { return NSNumber(value: double) }
        return nil
    }
}
