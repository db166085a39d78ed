import Glibc
import NIOHTTP1
import WarrenContract

/// The `Host` rule of RFC 9112 (§3.2): an HTTP/1.1 request has exactly one `Host` line and no
/// request has two; its value is `uri-host [":" port]` (RFC 3986 §3.2.2, with RFC 6874's zone
/// for an IPv6 literal) or empty (a target without an authority). Nothing routes on it, but a
/// request that breaks it is malformed, and a proxy in front may read it otherwise.
enum HostHeader {
    /// The 400 for `head`, or nil when its `Host` lines keep the rule.
    static func refusal(_ head: HTTPRequestHead) -> GatewayError? {
        let hosts = head.headers["host"]
        if hosts.count > 1 { return .invalid("the request has \(hosts.count) Host headers; send exactly one") }
        guard let host = hosts.first else {
            return head.version.minor >= 1 ? .invalid("an HTTP/1.1 request must have a Host header") : nil
        }
        return isValid(host) ? nil : .invalid("the Host header is not a host with an optional port")
    }

    /// Whether `value`, without the whitespace around it (RFC 9110 §5.5), is a registered name
    /// (unreserved characters, sub-delimiters, `%` and two hex digits), an IPv4 address (which
    /// is also one) or an IP literal in brackets (IPv6, with an optional `%25` zone, or
    /// `v<hex>.<…>`), then optionally `:` and digits.
    static func isValid(_ value: String) -> Bool {
        let host = value.utf8.drop { isWhitespace($0) }.reversed().drop { isWhitespace($0) }.reversed()
        let bytes = Array(host)
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            return isIPLiteral(bytes[1..<close]) && isPort(bytes[(close + 1)...])
        }
        let colon = bytes.firstIndex(of: UInt8(ascii: ":")) ?? bytes.endIndex
        return isRegisteredName(bytes[..<colon]) && isPort(bytes[colon...])
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool { byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }

    /// Nothing, or `:` and digits (an empty port is allowed, RFC 3986 §3.2.3).
    private static func isPort(_ rest: ArraySlice<UInt8>) -> Bool {
        guard let first = rest.first else { return true }
        return first == UInt8(ascii: ":") && rest.dropFirst().allSatisfy(isDigit)
    }

    /// `IPv6address [ "%25" ZoneID ]` (checked by `inet_pton`) or `IPvFuture`.
    private static func isIPLiteral(_ literal: ArraySlice<UInt8>) -> Bool {
        if let first = literal.first, first | 0x20 == UInt8(ascii: "v") {
            // "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
            guard let dot = literal.firstIndex(of: UInt8(ascii: ".")), dot > literal.startIndex + 1, dot < literal.endIndex - 1 else {
                return false
            }
            return literal[(literal.startIndex + 1)..<dot].allSatisfy(Check.isHexDigit)
                && literal[(dot + 1)...].allSatisfy { isUnreserved($0) || isSubDelimiter($0) || $0 == UInt8(ascii: ":") }
        }
        var address = literal
        if let percent = literal.firstIndex(of: UInt8(ascii: "%")) {
            // "%25" and a zone of unreserved characters and escapes.
            let zone = literal[percent...]
            guard zone.starts(with: Array("%25".utf8)), zone.count > 3, isEscaped(zone.dropFirst(3), allowing: isUnreserved) else { return false }
            address = literal[..<percent]
        }
        var parsed = in6_addr()
        return String(decoding: address, as: UTF8.self).withCString { inet_pton(AF_INET6, $0, &parsed) } == 1
    }

    /// `reg-name`: unreserved / pct-encoded / sub-delims, possibly empty.
    private static func isRegisteredName(_ name: ArraySlice<UInt8>) -> Bool {
        isEscaped(name) { isUnreserved($0) || isSubDelimiter($0) }
    }

    /// Whether every byte is `allowed` or begins a `%` and two hex digits.
    private static func isEscaped(_ bytes: ArraySlice<UInt8>, allowing allowed: (UInt8) -> Bool) -> Bool {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if bytes[index] == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, Check.isHexDigit(bytes[index + 1]), Check.isHexDigit(bytes[index + 2]) else { return false }
                index += 3
            } else {
                guard allowed(bytes[index]) else { return false }
                index += 1
            }
        }
        return true
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"): true
        default: false
        }
    }

    private static func isSubDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "!"), UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            true
        default: false
        }
    }
}
