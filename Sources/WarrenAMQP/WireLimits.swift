/// What AMQP 0-9-1 can carry, checked before anything is sent: librabbitmq writes a short
/// string's length in one byte without checking it (a 300-byte routing key or header name is
/// mis-framed), and a content header larger than a frame fails after the publish's method frame
/// went out, which leaves the connection unusable. Checking first keeps such input a clear error
/// for that call only.
enum WireLimits {
    static let shortString = 255
    /// How deep tables and arrays in headers are decoded; deeper values become `.void`. Warren
    /// itself never nests; the bound keeps hostile nesting from exhausting the I/O thread's stack.
    static let maxNesting = 32

    static func checkShortString(_ value: String, _ what: @autoclosure () -> String) throws(AMQPError) {
        guard value.utf8.count <= shortString else {
            throw .invalidArgument("\(what()) is \(value.utf8.count) bytes; AMQP allows at most \(shortString)")
        }
    }

    /// What librabbitmq takes as C strings (`const char *`: the login, the host, certificate
    /// paths) ends at the first NUL; such a value is refused rather than cut.
    static func checkCString(_ value: String, _ what: @autoclosure () -> String) throws(AMQPError) {
        guard !value.utf8.contains(0) else {
            throw .invalidArgument("\(what()) contains NUL (\\0); librabbitmq reads it as a C string and would cut it there")
        }
    }

    /// A configuration as librabbitmq will read it: C strings without NUL, the vhost a short
    /// string (`connection.open`; librabbitmq writes its length in one byte unchecked), and
    /// the numbers it takes as C `int`s in their range.
    static func checkConfiguration(_ configuration: AMQPConfiguration) throws(AMQPError) {
        for endpoint in configuration.endpoints {
            try checkCString(endpoint.host, "the host")
            guard (1...65_535).contains(endpoint.port) else { throw .invalidArgument("the port of \(endpoint.host) must be from 1 to 65535") }
        }
        try checkCString(configuration.user, "the user name")
        try checkCString(configuration.password, "the password")
        try checkCString(configuration.vhost, "the vhost")
        try checkCString(configuration.connectionName, "the connection name")
        for path in [configuration.tls?.caCertificatePath, configuration.tls?.certificatePath, configuration.tls?.keyPath] {
            if let path { try checkCString(path, "the TLS file path '\(path)'") }
        }
        try checkShortString(configuration.vhost, "the vhost")
        guard (0...65_535).contains(configuration.heartbeat.components.seconds) else {
            throw .invalidArgument("the heartbeat must be from 0 to 65535 seconds")
        }
        guard (4096...Int(Int32.max)).contains(configuration.frameMax) else { throw .invalidArgument("frame_max must be from 4096 to \(Int32.max)") }
        guard (0...65_535).contains(configuration.channelMax) else { throw .invalidArgument("channel_max must be from 0 to 65535") }
    }

    /// Checks every key (nested too) and every double (finite), and returns the table's encoded
    /// size in bytes.
    @discardableResult
    static func checkTable(_ table: AMQPTable, _ what: @autoclosure () -> String) throws(AMQPError) -> Int {
        var size = 4
        for (key, value) in table {
            try checkShortString(key, "a key in \(what())")
            size += 1 + key.utf8.count + 1 + (try encodedSize(value, what()))
        }
        return size
    }

    private static func encodedSize(_ value: AMQPFieldValue, _ what: String) throws(AMQPError) -> Int {
        switch value {
        case .bool: return 1
        case .double(let double):
            // RabbitMQ closes the whole connection (541 INTERNAL_ERROR) on a NaN or infinite
            // float, failing every channel on it: refused here, for this call only.
            guard double.isFinite else { throw .invalidArgument("\(what) hold \(double), which RabbitMQ refuses: send a finite number") }
            return 8
        case .int, .timestamp: return 8
        case .decimal: return 5
        case .void: return 0
        case .string(let string): return 4 + string.utf8.count
        case .bytes(let data): return 4 + data.count
        case .table(let table): return try checkTable(table, what)
        case .array(let values):
            var size = 4
            for value in values { size += 1 + (try encodedSize(value, what)) }
            return size
        }
    }

    /// The content header (class, weight, body size, flags, then the properties) must fit in one frame.
    static func checkProperties(_ properties: AMQPProperties, frameMax: Int) throws(AMQPError) {
        let size = try contentHeaderSize(properties)
        guard size <= frameMax - 8 else {
            throw .invalidArgument("the message properties take \(size) bytes; one frame holds \(frameMax - 8)")
        }
    }

    /// The content header's size in bytes; throws for what AMQP cannot carry at all.
    static func contentHeaderSize(_ properties: AMQPProperties) throws(AMQPError) -> Int {
        var size = 14
        // On every publish: no allocation here.
        func add(_ value: String?, _ name: StaticString) throws(AMQPError) {
            guard let value else { return }
            try checkShortString(value, "property \(name)")
            size += 1 + value.utf8.count
        }
        try add(properties.contentType, "content_type")
        try add(properties.contentEncoding, "content_encoding")
        try add(properties.correlationID, "correlation_id")
        try add(properties.replyTo, "reply_to")
        try add(properties.expiration, "expiration")
        try add(properties.messageID, "message_id")
        try add(properties.type, "type")
        try add(properties.userID, "user_id")
        try add(properties.appID, "app_id")
        if let headers = properties.headers { size += try checkTable(headers, "the headers") }
        size += 1 + 1 + 8
        return size
    }
}

extension AMQPProperties {
    /// The bytes of the content header these properties make on the wire; it must fit in one
    /// frame (`AMQPChannel.maxContentHeaderSize`). Throws `invalidArgument` for what AMQP cannot
    /// carry at all (a property or key over 255 bytes, a NaN double). For a sender that must
    /// leave room, e.g. for the `x-death` header the broker adds when it dead-letters a copy.
    public var contentHeaderSize: Int {
        get throws(AMQPError) { try WireLimits.contentHeaderSize(self) }
    }
}
