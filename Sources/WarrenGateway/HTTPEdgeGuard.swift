import NIOCore
import NIOHTTP1

/// The first handler of a gateway connection, on raw bytes before the HTTP decoder: it owns the
/// connection's read timeouts and answers what happens before a request head exists.
///
/// - Timeouts: the idle keep-alive wait, the head (from a request's first byte), the body (from
///   the head to the body's end). Past the head or body timeout the client gets 408 with the JSON
///   error, written here as bytes (the HTTP pipeline has no request to answer), and the connection
///   is closed; past the idle timeout it is closed. While a request is being answered nothing
///   times out here: the route's deadline bounds it.
/// - It tells a head that overflowed on its first line (414, the URL) from one that overflowed
///   in its headers (431), which the decoder's error does not say.
///
/// - Closing after an answer that the client may still be sending into (a parser error, a
///   refusal before the body, a timeout): `closeLingering` sends the answer's FIN and reads on,
///   dropping what comes, until the client closes or `HTTPEdgeSettings.lingerTimeout` passes. A
///   socket closed with bytes still unread sends a TCP reset, and a client still writing its
///   request would lose the answer to it.
///
/// One timer per connection at most, re-armed only when it fires: a keep-alive request moves
/// the deadline (a store) instead of scheduling and cancelling a task.
final class HTTPEdgeGuard: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        /// Waiting for the next request on a keep-alive connection.
        case idle
        /// A request's first bytes came; its head is not complete.
        case head
        /// The head came; the body is being read.
        case body
        /// The request is with the responder (or answered early and its rest is dropped).
        case busy
        /// Answered early while the body was still coming: closed silently at the body timeout.
        case dropping
        /// Answered and half-closed: reading and dropping until the client closes or the linger
        /// timeout.
        case lingering
    }

    private let settings: HTTPEdgeSettings
    private let responder: GatewayResponder
    private(set) var phase = Phase.idle
    private var context: ChannelHandlerContext?
    private var deadline: NIODeadline?
    private var wakeUp: NIODeadline?
    private var timer: Scheduled<Void>?
    private var requestID: String?
    private var bytesWhileBusy = false
    /// The client half-closed (its FIN came): nothing more will be read, so nothing to linger for.
    private var clientClosed = false
    /// Bytes of the current line so far, and whether it is a request line (the connection's
    /// first, or one after an empty line) rather than a header line.
    private var lineLength = 0
    private var lineIsRequestLine = true
    /// The length of the last complete request line (a whole head may come in one read, so the
    /// decoder's error can come after this scan passed the line that caused it).
    private var requestLineLength = 0

    init(settings: HTTPEdgeSettings, responder: GatewayResponder) {
        self.settings = settings
        self.responder = responder
    }

    /// Whether a head that overflowed the decoder's limits did so on its request line (414).
    var overflowIsOnRequestLine: Bool {
        (lineIsRequestLine && lineLength > HTTPEdgeSettings.maxFieldBytes) || requestLineLength > HTTPEdgeSettings.maxFieldBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { arm(settings.idleTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(settings.idleTimeout)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        switch phase {
        case .idle:
            phase = .head
            arm(settings.headerTimeout)
        case .busy:
            bytesWhileBusy = true
        case .lingering:
            return  // the rest of what was answered: read only so that the close is clean
        case .head, .body, .dropping:
            break
        }
        scan(buffer)
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            clientClosed = true
            if phase == .lingering {
                context.close(promise: nil)  // the client has read the answer and closed
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: - What the request handler tells

    /// A request head was decoded: the body's timeout starts, or none runs while it is answered.
    func headReceived(requestID: String, expectsBody: Bool) {
        self.requestID = requestID
        bytesWhileBusy = false
        if expectsBody {
            phase = .body
            arm(settings.bodyTimeout)
        } else {
            phase = .busy
            arm(nil)
        }
    }

    /// The request's last byte came.
    func requestEnded() {
        if phase == .body || phase == .dropping {
            phase = .busy
            arm(nil)
            // The scan took the body for lines; the next line is a request line. (Without a
            // body the scan is exact and may already be inside the next, pipelined head.)
            lineLength = 0
            lineIsRequestLine = true
        }
    }

    /// An answer was given before the body ended; the rest of the body is dropped until the
    /// body timeout, then the connection is closed without another answer.
    func answeredEarly() {
        if phase == .body { phase = .dropping }
    }

    /// A response is about to end: the keep-alive wait starts (or the next head's, if its
    /// bytes already came: while this request was answered, or after it in the same read).
    func responseEnding() {
        guard phase == .busy else { return }
        if bytesWhileBusy || lineLength > 0 || !lineIsRequestLine {
            phase = .head
            arm(settings.headerTimeout)
        } else {
            phase = .idle
            arm(settings.idleTimeout)
        }
        bytesWhileBusy = false
    }

    // MARK: - Timer

    private func arm(_ timeout: TimeAmount?) {
        guard let timeout else {
            deadline = nil
            return
        }
        let at = NIODeadline.now() + timeout
        deadline = at
        if let wakeUp, wakeUp <= at { return }  // that wake-up comes first and re-arms
        schedule(at)
    }

    private func schedule(_ at: NIODeadline) {
        guard let context else { return }
        wakeUp = at
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: at) { bound.value.wake(at) }
    }

    private func wake(_ at: NIODeadline) {
        guard wakeUp == at else { return }  // superseded by an earlier one, which re-armed
        wakeUp = nil
        timer = nil
        guard let deadline else { return }
        if deadline > .now() {
            schedule(deadline)
        } else {
            timedOut()
        }
    }

    private func stop() {
        timer?.cancel()
        timer = nil
        deadline = nil
        wakeUp = nil
        context = nil
    }

    private func timedOut() {
        deadline = nil
        guard let context else { return }
        switch phase {
        case .idle, .dropping, .lingering:
            context.close(promise: nil)
        case .head:
            answerAndClose(
                GatewayError(
                    status: 408, code: "request_timeout",
                    message: "the request's head did not arrive within \(Self.seconds(settings.headerTimeout)) s"),
                requestID: nil, context: context)
        case .body:
            answerAndClose(
                GatewayError(
                    status: 408, code: "request_timeout",
                    message: "the request's body did not arrive within \(Self.seconds(settings.bodyTimeout)) s"),
                requestID: requestID, context: context)
        case .busy:
            break
        }
    }

    /// Writes an error response as bytes, below the HTTP pipeline, and closes the connection.
    private func answerAndClose(_ error: GatewayError, requestID: String?, context: ChannelHandlerContext) {
        let response = responder.reject(error, head: nil, requestID: requestID ?? responder.ids.next())
        writeAndClose(Self.encode(response, allocator: context.channel.allocator))
    }

    /// Writes a whole response's bytes (`encode`) past the HTTP encoder, then closes the
    /// connection (`closeLingering`).
    func writeAndClose(_ bytes: ByteBuffer) {
        guard let context else { return }
        phase = .dropping
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in bound.value.closeLingering() }
    }

    /// Closes the connection after its last answer was written, without a reset: sends the FIN
    /// (`close(mode: .output)`), then reads and drops what the client still sends until it
    /// closes too or `HTTPEdgeSettings.lingerTimeout` passes. Where a half-close is not possible
    /// (an `EmbeddedChannel`) it closes at once.
    func closeLingering() {
        guard let context, context.channel.isActive, phase != .lingering else { return }
        guard !clientClosed else {
            context.close(promise: nil)
            return
        }
        phase = .lingering
        arm(HTTPEdgeSettings.lingerTimeout)
        let channel = context.channel
        let halfClosed = context.eventLoop.makePromise(of: Void.self)
        halfClosed.futureResult.whenFailure { _ in channel.close(promise: nil) }
        context.close(mode: .output, promise: halfClosed)
    }

    /// A whole HTTP/1.1 response with `Connection: close`, as bytes.
    static func encode(_ response: GatewayResponse, allocator: ByteBufferAllocator) -> ByteBuffer {
        let status = HTTPResponseStatus(statusCode: response.status)
        var buffer = allocator.buffer(capacity: 256 + response.body.readableBytes)
        buffer.writeString("HTTP/1.1 \(response.status) \(status.reasonPhrase)\r\n")
        for (name, value) in response.headers where name.lowercased() != "content-length" && name.lowercased() != "connection" {
            buffer.writeString("\(name): \(value)\r\n")
        }
        buffer.writeString("Content-Length: \(response.body.readableBytes)\r\nConnection: close\r\n\r\n")
        buffer.writeImmutableBuffer(response.body)
        return buffer
    }

    private static func seconds(_ amount: TimeAmount) -> String {
        let value = Double(amount.nanoseconds) / 1e9
        return value == value.rounded() ? "\(Int64(value))" : "\(value)"
    }

    // MARK: - Lines

    /// Follows line breaks to know whether the line being read is a request line. Bodies are
    /// scanned too (the decoder, not this, knows where they end), so after a body the next
    /// request line may be taken for a header line: that only changes 414 into 431.
    private func scan(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            var start = 0
            while let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let length = lineLength + newline - start
                if lineIsRequestLine, length > 1 { requestLineLength = length }
                // An empty line (or a lone CR) ends a head: the next line is a request line.
                lineIsRequestLine = length <= 1
                lineLength = 0
                start = newline + 1
            }
            lineLength += bytes.count - start
        }
    }
}

/// The HTTP limits and timeouts of every connection, from the gateway's configuration.
struct HTTPEdgeSettings: Sendable {
    var headerTimeout: TimeAmount
    var bodyTimeout: TimeAmount
    var idleTimeout: TimeAmount
    var maxBodyBytes: Int

    /// The URL and each header line: at most 16 KiB (the decoder counts a header's name and value).
    static let maxFieldBytes = 16 * 1024
    /// The request line and headers together: at most 64 KiB.
    static let maxHeadBytes = 64 * 1024
    /// At most 200 header lines.
    static let maxHeaderCount = 200
    /// How long a connection closed after an error answer goes on reading (and dropping) what
    /// the client still sends, so that the close reaches it as a FIN after the answer, not a
    /// reset before it (`HTTPEdgeGuard.closeLingering`).
    static let lingerTimeout = TimeAmount.seconds(2)

    init(_ configuration: GatewayConfiguration) {
        headerTimeout = .nanoseconds(Int64(configuration.headerTimeout / .nanoseconds(1)))
        bodyTimeout = .nanoseconds(Int64(configuration.bodyTimeout / .nanoseconds(1)))
        idleTimeout = .nanoseconds(Int64(configuration.idleTimeout / .nanoseconds(1)))
        maxBodyBytes = configuration.maxBodyBytes
    }

    var decoderLimits: NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = Self.maxFieldBytes
        limits.maxHeaderListSize = Self.maxHeadBytes
        limits.maxHeaderFieldCount = Self.maxHeaderCount
        return limits
    }
}
