/// Everything needed to reach a broker, with defaults that work against a local RabbitMQ.
public struct AMQPConfiguration: Sendable, Equatable {
    /// TLS settings for `amqps://`. Paths point at PEM files.
    public struct TLS: Sendable, Equatable {
        public var caCertificatePath: String?
        public var certificatePath: String?
        public var keyPath: String?
        public var verifyPeer: Bool
        public var verifyHostname: Bool

        public init(
            caCertificatePath: String? = nil,
            certificatePath: String? = nil,
            keyPath: String? = nil,
            verifyPeer: Bool = true,
            verifyHostname: Bool = true
        ) {
            self.caCertificatePath = caCertificatePath
            self.certificatePath = certificatePath
            self.keyPath = keyPath
            self.verifyPeer = verifyPeer
            self.verifyHostname = verifyHostname
        }
    }

    /// One broker node: a host name or address (IPv6 without brackets) and its AMQP port.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port`, an IPv6 address in brackets.
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// How a lost connection is re-established. After a lost connection each node is tried once
    /// in turn (a round), starting with the one after the node that was lost; between rounds the
    /// pause is drawn at random from zero to a cap that doubles from `initialBackoff` up to
    /// `maxBackoff` ("full jitter"), so that the clients of a failed node do not all come back
    /// at the same instant.
    public struct Recovery: Sendable, Equatable {
        public var isEnabled: Bool
        public var initialBackoff: Duration
        public var maxBackoff: Duration

        public init(isEnabled: Bool = true, initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(5)) {
            self.isEnabled = isEnabled
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }
    }

    /// The first node in the URL. With several nodes, the connection starts at one of them
    /// chosen at random (see `endpoints`).
    public var host: String
    public var port: Int
    /// The other nodes of the same cluster, after `host`:`port`, in the URL's order.
    public var additionalEndpoints: [Endpoint] = []
    /// Every node the connection may use, as written in the URL.
    public var endpoints: [Endpoint] { [Endpoint(host: host, port: port)] + additionalEndpoints }
    public var user: String
    public var password: String
    public var vhost: String
    /// Set for `amqps://` URLs.
    public var tls: TLS?
    /// Heartbeat interval negotiated with the broker; 0 disables heartbeats.
    public var heartbeat: Duration
    public var frameMax: Int
    public var channelMax: Int
    /// Shown in the management UI and `rabbitmqctl list_connections`, so operators can tell processes apart.
    public var connectionName: String
    /// How long one node may take to accept the TCP connection (and, once accepted, the AMQP
    /// handshake): a node that refuses fails at once, one that drops packets costs this long
    /// before the next node is tried. URL query parameter `connection_timeout` (ms).
    public var connectTimeout: Duration
    /// The longest a synchronous broker call (declare, bind, …) may take before the connection is
    /// treated as lost: librabbitmq closes the socket when such a timeout fires.
    public var operationTimeout: Duration
    public var recovery: Recovery

    public init(
        host: String = "localhost",
        port: Int? = nil,
        user: String = "guest",
        password: String = "guest",
        vhost: String = "/",
        tls: TLS? = nil,
        heartbeat: Duration = .seconds(10),
        frameMax: Int = 131_072,
        channelMax: Int = 2047,
        connectionName: String = "warren",
        connectTimeout: Duration = .seconds(5),
        operationTimeout: Duration = .seconds(30),
        recovery: Recovery = Recovery()
    ) {
        self.host = host
        self.port = port ?? (tls == nil ? 5672 : 5671)
        self.user = user
        self.password = password
        self.vhost = vhost
        self.tls = tls
        self.heartbeat = heartbeat
        self.frameMax = frameMax
        self.channelMax = channelMax
        self.connectionName = connectionName
        self.connectTimeout = connectTimeout
        self.operationTimeout = operationTimeout
        self.recovery = recovery
    }

    /// Reads an `amqp://user:password@host:port/vhost?heartbeat=10&frame_max=131072&connection_name=x`
    /// URL (RabbitMQ's URI spec): parts are percent-decoded, an empty path means vhost `/`, and
    /// `/%2F` also means `/`. `amqps://` turns on TLS with peer verification.
    public init(url: String) throws(AMQPError) {
        func fail(_ reason: String) -> AMQPError { .invalidURL(url, reason: reason) }

        let isTLS: Bool
        var rest: Substring
        if url.hasPrefix("amqp://") {
            isTLS = false
            rest = url.dropFirst("amqp://".count)
        } else if url.hasPrefix("amqps://") {
            isTLS = true
            rest = url.dropFirst("amqps://".count)
        } else {
            throw fail("the scheme must be amqp:// or amqps://")
        }
        self.init(tls: isTLS ? TLS() : nil)

        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring? = nil
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var authority = rest
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let parts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard let user = Self.percentDecode(parts[0]) else { throw fail("the user name is not valid percent-encoding of UTF-8 without %00") }
            self.user = user
            if parts.count == 2 {
                guard let password = Self.percentDecode(parts[1]) else { throw fail("the password is not valid percent-encoding of UTF-8 without %00") }
                self.password = password
            }
        }
        // host:port, or [IPv6]:port; several, comma-separated, for the nodes of a cluster.
        let defaultPort = port
        let items = authority.split(separator: ",", omittingEmptySubsequences: false)
        guard items.count <= Self.maxEndpoints else { throw fail("at most \(Self.maxEndpoints) hosts may be listed, not \(items.count)") }
        var endpoints: [Endpoint] = []
        for (index, item) in items.enumerated() {
            let which = items.count > 1 ? "host \(index + 1) of \(items.count) ('\(item)')" : "the host"
            let endpoint = try Self.parseEndpoint(item, defaultPort: defaultPort, which: which, fail: fail)
            if let endpoint {
                endpoints.append(endpoint)
            } else if items.count > 1 {
                // Only a lone empty authority means localhost: in a list it is a typo (",,", a trailing comma).
                throw fail("\(which) is empty")
            } else if let port = Self.lonePort(item) {
                self.port = try Self.parsePort(port, which: which, fail: fail) ?? defaultPort
            }
        }
        if let first = endpoints.first {
            host = first.host
            port = first.port
            additionalEndpoints = Array(endpoints.dropFirst())
        }
        if let path, !path.isEmpty {
            guard !path.contains("/") else { throw fail("the vhost must be one path segment; write '/' as %2F") }
            guard let vhost = Self.percentDecode(path) else { throw fail("the vhost is not valid percent-encoding of UTF-8 without %00") }
            self.vhost = vhost
        }
        for item in query.split(separator: "&") where !item.isEmpty {
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(pair[0])
            guard pair.count == 2, let value = Self.percentDecode(pair[1]) else {
                throw fail("query item '\(item)' needs a value, in percent-encoding of UTF-8 without %00")
            }
            switch key {
            case "heartbeat":
                // AMQP carries the heartbeat in 16 bits.
                guard let seconds = Int(value), (0...65535).contains(seconds) else { throw fail("heartbeat must be whole seconds from 0 to 65535") }
                heartbeat = .seconds(seconds)
            case "frame_max":
                guard let frameMax = Int(value), (4096...Int(Int32.max)).contains(frameMax) else {
                    throw fail("frame_max must be from 4096 to \(Int32.max)")
                }
                self.frameMax = frameMax
            case "channel_max":
                guard let channelMax = Int(value), (1...65535).contains(channelMax) else { throw fail("channel_max must be from 1 to 65535") }
                self.channelMax = channelMax
            case "connection_timeout":
                guard let ms = Int(value), (1...86_400_000).contains(ms) else { throw fail("connection_timeout must be milliseconds from 1 to 86400000") }
                connectTimeout = .milliseconds(ms)
            case "connection_name":
                connectionName = value
            case "cacertfile":
                tls?.caCertificatePath = value
            case "certfile":
                tls?.certificatePath = value
            case "keyfile":
                tls?.keyPath = value
            case "verify":
                tls?.verifyPeer = value != "verify_none"
                tls?.verifyHostname = value != "verify_none"
            default:
                throw fail("unknown query parameter '\(key)'")
            }
        }
    }

    /// More would only slow a failing round down; a real cluster has a handful of nodes.
    static let maxEndpoints = 64

    /// One `host`, `host:port` or `[IPv6]:port` of the authority; nil when the host is empty
    /// (`:5673` alone, or nothing).
    private static func parseEndpoint(
        _ item: Substring, defaultPort: Int, which: String, fail: (String) -> AMQPError
    ) throws(AMQPError) -> Endpoint? {
        var hostPart = item
        var portPart: Substring? = nil
        if item.hasPrefix("[") {
            guard let close = item.firstIndex(of: "]") else { throw fail("\(which): unterminated IPv6 address") }
            hostPart = item[item.index(after: item.startIndex)..<close]
            let after = item[item.index(after: close)...]
            if after.hasPrefix(":") { portPart = after.dropFirst() } else if !after.isEmpty { throw fail("\(which): unexpected text after the IPv6 address") }
            guard !hostPart.isEmpty else { throw fail("\(which): empty IPv6 address") }
        } else if let colon = item.firstIndex(of: ":") {
            hostPart = item[..<colon]
            portPart = item[item.index(after: colon)...]
            guard portPart?.contains(":") != true else {
                throw fail("\(which): an IPv6 address goes in brackets, e.g. [::1]:5672")
            }
        }
        guard !hostPart.isEmpty else { return nil }
        guard let host = percentDecode(hostPart) else { throw fail("\(which): the host is not valid percent-encoding of UTF-8 without %00") }
        guard !host.isEmpty, !host.contains(",") else { throw fail("\(which): the host is empty or contains a comma") }
        let port = try portPart.flatMap { (text) throws(AMQPError) -> Int? in try parsePort(text, which: which, fail: fail) } ?? defaultPort
        return Endpoint(host: host, port: port)
    }

    /// The port of an authority with no host (`:5673`), as RabbitMQ's URI spec allows.
    private static func lonePort(_ item: Substring) -> Substring? {
        item.hasPrefix(":") ? item.dropFirst() : nil
    }

    /// Digits only (no sign, no spaces), 1 to 65535; nil for an empty port (the default).
    private static func parsePort(_ text: Substring, which: String, fail: (String) -> AMQPError) throws(AMQPError) -> Int? {
        guard !text.isEmpty else { return nil }
        guard text.utf8.count <= 5, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            let port = Int(text), (1...65535).contains(port)
        else { throw fail("\(which): the port '\(text)' is not a number from 1 to 65535") }
        return port
    }

    private static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        // NUL would end the C string librabbitmq is handed (login, host, certificate paths).
        guard !bytes.contains(0) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
