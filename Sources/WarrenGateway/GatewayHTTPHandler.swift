import NIOCore
import NIOHTTP1

/// One gateway connection after SwiftNIO's HTTP/1 decoder and pipelining handler (which hands
/// over one request at a time and holds pipelined ones until the response ends, so answers go
/// out in order). It reads a request's body (bounded), hands the request to the responder, and
/// writes the response on the connection's event loop when the responder's closure brings it,
/// from whatever thread: no task per request.
///
/// Refused before the body: a `Content-Length` over the limit (413), an `Expect` other than
/// `100-continue` (417), and with `Expect: 100-continue` no route, a wrong method or a missing
/// token; otherwise `100 Continue` goes out before the body is read. A `Transfer-Encoding`
/// other than one `chunked` is 400. A `CONNECT` or a request with `Upgrade` is answered (the
/// JSON error for `CONNECT`), then the connection is closed. Every HTTP parser error
/// gets the JSON error (414/431 for an overlong URL or head, 400 for the rest) and the
/// connection is closed. A client that leaves loses its own answer only; nothing is logged.
final class GatewayHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case reading(GatewayRequest)
        /// Answered before the request ended: the rest is dropped, then the connection closed.
        case dropping
        /// With the responder.
        case waiting(HTTPRequestHead)
        case closed
    }

    private var state = State.idle
    private let responder: GatewayResponder
    private let edge: HTTPEdgeGuard
    private let maxBodyBytes: Int
    private var remoteAddress: String?
    /// The client half-closed (sent FIN after its request): answer what it sent, then close.
    private var inputClosed = false
    /// In `write`: the pipelining handler hands over what it held (the next request, a parser
    /// error, a FIN) while the response's end is written, before the flush; a close then
    /// waits for the flush, or it would throw the response away.
    private var writing = false
    private var closeWhenWritten = false
    private var innerWritten: EventLoopFuture<Void>?

    init(responder: GatewayResponder, edge: HTTPEdgeGuard, maxBodyBytes: Int) {
        self.responder = responder
        self.edge = edge
        self.maxBodyBytes = maxBodyBytes
    }

    func handlerAdded(context: ChannelHandlerContext) {
        remoteAddress = context.channel.remoteAddress?.ipAddress
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        context.fireChannelInactive()
    }

    /// A half-close (the server allows them so that a client that sends FIN after its request,
    /// as `nc -N` or an HTTP/1.0 tool does, still gets its answer): the request with the
    /// responder is answered and the connection closed after it; otherwise nothing more can
    /// come, so it closes now (a half-sent request has already failed in the decoder).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        inputClosed = true
        if case .waiting = state { return }
        close(context: context)
    }

    /// Closes the connection, after the response being written if there is one; lingering
    /// (`HTTPEdgeGuard.closeLingering`), as the client may still be sending.
    private func close(context: ChannelHandlerContext) {
        state = .closed
        if writing {
            closeWhenWritten = true
        } else {
            edge.closeLingering()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            // Only on an open connection: a request the pipelining handler held behind one
            // answered with a close (a refusal before its body) must not run.
            guard case .idle = state else { return }
            received(head, context: context)
        case .body(var chunk):
            guard case .reading(var request) = state else { return }
            state = .idle  // the request is moved out, so appending does not copy the body
            if request.body == nil {
                request.body = chunk
            } else {
                request.body?.writeBuffer(&chunk)
            }
            if (request.body?.readableBytes ?? 0) > maxBodyBytes {
                answerEarly(Self.tooLarge(maxBodyBytes), head: request.head, requestID: request.requestID, context: context)
                return
            }
            state = .reading(request)
        case .end:
            switch state {
            case .reading(let request):
                edge.requestEnded()
                state = .waiting(request.head)
                let loop = context.eventLoop
                let bound = NIOLoopBound((self, context), eventLoop: loop)
                responder.respond(to: request) { response in
                    if loop.inEventLoop {
                        bound.value.0.send(response, context: bound.value.1)
                    } else {
                        loop.execute { bound.value.0.send(response, context: bound.value.1) }
                    }
                }
            case .dropping:
                edge.requestEnded()
                close(context: context)
            case .idle, .waiting, .closed:
                break
            }
        }
    }

    private func received(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let requestID = responder.requestID(for: head)
        let length = head.headers.first(name: "content-length").flatMap { Int($0) }
        let chunked = head.headers.contains(name: "transfer-encoding")
        edge.headReceived(requestID: requestID, expectsBody: (length ?? 0) > 0 || chunked)
        // Every `Expect` value, from every line: one other than 100-continue anywhere is refused.
        let expectations = head.version.minor >= 1 ? head.headers[canonicalForm: "expect"].filter { !$0.isEmpty } : []
        let expect: Substring? = expectations.first { $0.lowercased() != "100-continue" } ?? expectations.first
        if chunked, let refusal = Self.refusedTransferEncoding(head.headers[canonicalForm: "transfer-encoding"]) {
            // The body's framing is not one the gateway reads: nothing after this head can be
            // trusted to be where a request starts.
            answerEarly(refusal, head: head, requestID: requestID, context: context, closeNow: true)
            return
        }
        if let length, length > maxBodyBytes {
            answerEarly(Self.tooLarge(maxBodyBytes), head: head, requestID: requestID, context: context, closeNow: expect != nil)
            return
        }
        if let refusal = HostHeader.refusal(head) {
            answerEarly(refusal, head: head, requestID: requestID, context: context, closeNow: expect != nil)
            return
        }
        if let expect {
            guard expect.lowercased() == "100-continue" else {
                let error = GatewayError(
                    status: 417, code: "expectation_failed", message: "Expect: '\(expect)' is not supported; only '100-continue' is")
                answerEarly(error, head: head, requestID: requestID, context: context, closeNow: true)
                return
            }
            if let refusal = responder.refusalBeforeBody(head) {
                answerEarly(refusal, head: head, requestID: requestID, context: context, closeNow: true)
                return
            }
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
        }
        state = .reading(GatewayRequest(head: head, body: nil, remoteAddress: remoteAddress, requestID: requestID))
    }

    /// The responder's answer, on the event loop. A connection that closed meanwhile drops it.
    private func send(_ response: GatewayResponse, context: ChannelHandlerContext) {
        guard case .waiting(let head) = state else { return }
        let keepAlive = head.isKeepAlive && !inputClosed && !Self.endsParsing(head)
        state = keepAlive ? .idle : .closed
        write(response, head: head, close: !keepAlive, context: context)
    }

    /// An answer before the request's end; the connection closes after it (at once when the
    /// client waits for `100 Continue`, else once the body it is sending has been dropped).
    private func answerEarly(
        _ error: GatewayError, head: HTTPRequestHead, requestID: String, context: ChannelHandlerContext, closeNow: Bool = false
    ) {
        let response = responder.reject(error, head: head, requestID: requestID)
        state = closeNow ? .closed : .dropping
        edge.answeredEarly()
        write(response, head: head, close: true, context: context, closeAfterWrite: closeNow)
    }

    /// Whether the decoder reads nothing after this request (llhttp takes `CONNECT`, and an
    /// `Upgrade` header with `Connection: upgrade`, for a switch to another protocol): the
    /// gateway switches to none, so it answers and closes rather than wait for a next request
    /// that would never be read. Any `Upgrade` header counts, so the rule need not copy llhttp's.
    static func endsParsing(_ head: HTTPRequestHead) -> Bool {
        head.method == .CONNECT || head.headers.contains(name: "upgrade")
    }

    private func write(
        _ response: GatewayResponse, head: HTTPRequestHead?, close: Bool, context: ChannelHandlerContext, closeAfterWrite: Bool? = nil
    ) {
        if head?.method == .CONNECT {
            // NIO's encoder drops the body of any response to CONNECT (a tunnel's has none), so
            // the refusal goes out as bytes below it, with `Connection: close`, and the
            // connection closes after it: the decoder reads nothing more on it.
            state = .closed
            edge.responseEnding()
            edge.writeAndClose(HTTPEdgeGuard.encode(response, allocator: context.channel.allocator))
            return
        }
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        let version = head?.version ?? .http1_1
        if close {
            headers.replaceOrAdd(name: "Connection", value: "close")
        } else if version.minor == 0 {
            headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
        edge.responseEnding()
        let responseHead = HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if head?.method != .HEAD, response.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        let outer = !writing
        writing = true
        var written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if outer {
            writing = false
            // A response written meanwhile (a parser error's) went out after this one.
            written = innerWritten ?? written
            innerWritten = nil
        } else {
            innerWritten = written
        }
        if closeAfterWrite ?? close || (outer && closeWhenWritten) {
            if outer { closeWhenWritten = false }
            // Not a plain close: the client may still be sending (the request an error answered,
            // requests pipelined behind a `Connection: close`), and a close with unread bytes
            // resets the connection before the client has read this answer.
            let edge = NIOLoopBound(edge, eventLoop: context.eventLoop)
            written.whenComplete { _ in edge.value.closeLingering() }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            // Bytes after a parser error (the decoder's follow-up errors): the answer to that
            // error is on its way and closes. Anything else is the connection failing.
            if !(error is ByteToMessageDecoderError) {
                close(context: context)
            }
            return
        }
        switch state {
        case .idle, .reading:
            break
        case .dropping, .waiting, .closed:
            close(context: context)
            return
        }
        let head: HTTPRequestHead?
        if case .reading(let request) = state { head = request.head } else { head = nil }
        state = .closed
        if parserError == .invalidEOFState || parserError == .closedConnection {
            // The client closed in the middle of its request, or sent bytes after a request
            // that ended the connection: nothing more to answer.
            close(context: context)
            return
        }
        let requestID = head.map { responder.requestID(for: $0) } ?? responder.ids.next()
        let response = responder.reject(Self.gatewayError(parserError, onRequestLine: edge.overflowIsOnRequestLine), head: head, requestID: requestID)
        write(response, head: head, close: true, context: context)
    }

    /// The JSON error for what the HTTP parser refused.
    static func gatewayError(_ error: HTTPParserError, onRequestLine: Bool) -> GatewayError {
        switch error {
        case .headerOverflow where onRequestLine:
            return GatewayError(
                status: 414, code: "uri_too_long", message: "the request's URL is longer than \(HTTPEdgeSettings.maxFieldBytes) bytes")
        case .headerOverflow:
            return GatewayError(
                status: 431, code: "header_fields_too_large",
                message:
                    "the request's headers are too large: at most \(HTTPEdgeSettings.maxHeaderCount) headers, \(HTTPEdgeSettings.maxFieldBytes) bytes each and \(HTTPEdgeSettings.maxHeadBytes) bytes in all"
            )
        case .invalidMethod:
            return .invalid("the request is not valid HTTP/1.1: unknown method")
        case .invalidVersion:
            return .invalid("the request is not valid HTTP/1.1: unsupported HTTP version")
        case .unexpectedContentLength:
            return .invalid("the request is not valid HTTP/1.1: conflicting or invalid Content-Length")
        case .invalidChunkSize:
            return .invalid("the request is not valid HTTP/1.1: invalid chunk size in a chunked body")
        case .invalidContentLength:
            return .invalid("the request is not valid HTTP/1.1: invalid Content-Length")
        case .lfExpected:
            return .invalid("the request is not valid HTTP/1.1: lines must end with CRLF")
        case .invalidHeaderToken, .invalidCharactersUsed:
            return .invalid("the request is not valid HTTP/1.1: a forbidden character in a header")
        case .invalidURL, .invalidPath, .invalidQueryString, .invalidFragment, .invalidHost, .invalidPort:
            return .invalid("the request is not valid HTTP/1.1: an invalid URL")
        case .paused:
            // llhttp pauses at HTTP/2's connection preface (`PRI * HTTP/2.0`).
            return .invalid("the request is not valid HTTP/1.1: HTTP/2 is not served here, use HTTP/1.1")
        case .unknown:
            // What llhttp's strict checks refuse that NIO names no case for, mostly Transfer-Encoding.
            return .invalid(
                "the request is not valid HTTP/1.1: a Transfer-Encoding other than one 'chunked', or a malformed chunk or line")
        default:
            return .invalid("the request is not valid HTTP/1.1: \(error)")
        }
    }

    /// A `Transfer-Encoding` other than exactly one `chunked` (a coding before it, such as
    /// `gzip, chunked`, which the decoder would pass on still encoded, or `chunked` twice): 400,
    /// as the decoder's own refusals of the header are. `values`: the header's comma-separated
    /// elements, over all its lines.
    static func refusedTransferEncoding(_ values: [Substring]) -> GatewayError? {
        guard values.count != 1 || values[0].lowercased() != "chunked" else { return nil }
        return .invalid(
            "the request is not valid HTTP/1.1: Transfer-Encoding must be exactly 'chunked', not '\(values.joined(separator: ", ").prefix(100))'")
    }

    static func tooLarge(_ limit: Int) -> GatewayError {
        GatewayError(status: 413, code: "payload_too_large", message: "the body is larger than \(limit) bytes")
    }
}
