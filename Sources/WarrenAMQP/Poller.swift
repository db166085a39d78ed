import Glibc

/// Waits on a set of file descriptors for input with `poll(2)`: the I/O thread's only way to
/// sleep. It knows nothing of AMQP; the loop decides what a readable descriptor means.
struct Poller {
    private var fds: [pollfd]

    init(_ descriptors: [Int32]) {
        fds = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    }

    /// Sleeps until one descriptor is readable or `timeout` milliseconds pass; returns how many
    /// are ready (0 on a timeout, -1 on an error such as EINTR, treated as a timeout).
    mutating func wait(timeout: Int32) -> Int32 {
        for index in fds.indices { fds[index].revents = 0 }
        return poll(&fds, nfds_t(fds.count), timeout)
    }

    /// Whether the descriptor at `index` (in the order given) was readable, or failed, after
    /// the last `wait`.
    func isReady(_ index: Int) -> Bool { fds[index].revents != 0 }
}
