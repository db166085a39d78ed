import Foundation
import Glibc

/// A plain TCP connection to the gateway, for what URLSession and curl cannot send or show:
/// malformed requests, pipelining, half-sent bodies, `100 Continue`, the moment of a close.
/// Blocking socket calls run on a Dispatch queue, never on a task's thread.
final class RawHTTPConnection: @unchecked Sendable {
    private let fd: Int32
    private var received: [UInt8] = []
    private(set) var closedByPeer = false
    /// The peer's close was a reset (ECONNRESET), which can throw away an answer not yet read.
    private(set) var resetByPeer = false

    /// One parsed response.
    struct Response: Sendable {
        var status: Int
        var headers: [(String, String)]
        var body: Data

        func header(_ name: String) -> String? {
            headers.first { $0.0.lowercased() == name.lowercased() }?.1
        }
        var error: [String: Any] {
            let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
            return object?["error"] as? [String: Any] ?? [:]
        }
    }

    enum Failure: Error { case connect(Int32) }

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw Failure.connect(errno)
        }
    }

    deinit { Glibc.close(fd) }

    /// Sends all of `text`; false if the connection failed first (the peer closed or reset it).
    @discardableResult
    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))
    }

    /// Half-closes: the client sends no more (FIN), but can still read the answer.
    func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    /// Reads until `count` responses are complete (a 1xx counts), the peer closes, or `timeout`.
    /// `headRequests`: the positions (0-based) of responses to HEAD, which have no body.
    func responses(_ count: Int, timeout: Double = 10, headRequests: Set<Int> = []) async -> [Response] {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: self.read(count, timeout: timeout, headRequests: headRequests))
            }
        }
    }

    /// Waits up to `timeout` for the peer to close; true if it did.
    func waitForClose(timeout: Double) async -> Bool {
        _ = await responses(Int.max, timeout: timeout)
        return closedByPeer
    }

    private func read(_ count: Int, timeout: Double, headRequests: Set<Int>) -> [Response] {
        var parsed: [Response] = []
        let deadline = Date() + timeout
        var offset = 0
        while parsed.count < count {
            if let (response, end) = Self.parse(received, from: offset, isHead: headRequests.contains(parsed.count)) {
                parsed.append(response)
                offset = end
                continue
            }
            guard !closedByPeer else { break }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { break }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, Int32(min(left, 60) * 1000)) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let read = recv(fd, &buffer, buffer.count, 0)
            if read <= 0 {
                closedByPeer = true
                if read < 0, errno == ECONNRESET { resetByPeer = true }
            } else {
                received += buffer[0..<read]
            }
        }
        received.removeFirst(offset)
        return parsed
    }

    private static func parse(_ bytes: [UInt8], from start: Int, isHead: Bool) -> (Response, Int)? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count - start >= 4,
            let headEnd = (start...(bytes.count - 4)).first(where: { Array(bytes[$0..<($0 + 4)]) == separator })
        else { return nil }
        let lines = String(decoding: bytes[start..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = lines.first, statusLine.count >= 12, let status = Int(statusLine.dropFirst(9).prefix(3)) else { return nil }
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = (status < 200 || isHead) ? 0 : headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        let bodyStart = headEnd + 4
        guard bytes.count >= bodyStart + length else { return nil }
        return (Response(status: status, headers: headers, body: Data(bytes[bodyStart..<(bodyStart + length)])), bodyStart + length)
    }
}
