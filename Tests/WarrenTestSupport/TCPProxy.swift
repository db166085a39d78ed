import Foundation
import Glibc
import Synchronization

/// A TCP proxy in front of the broker, so tests can cut the network between client and broker:
/// `blackhole()` silently drops traffic both ways (a dead link only heartbeats can detect),
/// `cut()` closes every connection (the client sees a reset). New connections are forwarded
/// again after `restore()`. (Shared by the test targets: moved here from WarrenAMQPTests.)
public final class TCPProxy: Sendable {
    private struct State {
        var sockets: [Int32] = []
        var blackholed = false
        var stopped = false
    }

    public let port: UInt16
    private let listener: Int32
    private let target: UInt16
    private let state = Mutex(State())

    public init(targetPort: UInt16 = 5672) throws {
        target = targetPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        port = UInt16(bigEndian: address.sin_port)
        guard bound, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    public func blackhole() { state.withLock { $0.blackholed = true } }

    public func restore() { state.withLock { $0.blackholed = false } }

    /// Closes every proxied connection, as a broken link would.
    public func cut() {
        let sockets = state.withLock { state in
            defer { state.sockets = [] }
            return state.sockets
        }
        for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    public func stop() {
        state.withLock { $0.stopped = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        cut()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            if state.withLock({ $0.stopped }) {
                close(client)
                return
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = target.bigEndian
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else {
                close(client)
                close(upstream)
                continue
            }
            state.withLock { $0.sockets += [client, upstream] }
            Thread { [self] in pump(from: client, to: upstream) }.start()
            Thread { [self] in pump(from: upstream, to: client) }.start()
        }
    }

    private func pump(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = read(source, &buffer, buffer.count)
            guard count > 0 else { break }
            if state.withLock({ $0.blackholed }) { continue }
            var offset = 0
            while offset < count {
                // MSG_NOSIGNAL: a peer that closed must not SIGPIPE the whole test process.
                let written = buffer[offset..<count].withUnsafeBytes { send(destination, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard written > 0 else { break }
                offset += written
            }
        }
        shutdown(destination, Int32(SHUT_RDWR))
        shutdown(source, Int32(SHUT_RDWR))
    }
}

extension TCPProxy {
    /// `url` (an AMQP URL of the local broker, with user and vhost) pointed at this proxy instead.
    public func url(through url: String) -> String {
        guard let scheme = url.range(of: "://") else { return url }
        let authorityEnd = url[scheme.upperBound...].firstIndex(of: "/") ?? url.endIndex
        let authority = url[scheme.upperBound..<authorityEnd]
        let credentials = authority.lastIndex(of: "@").map { String(authority[...$0]) } ?? ""
        return "\(url[..<scheme.upperBound])\(credentials)127.0.0.1:\(port)\(url[authorityEnd...])"
    }
}
