/// Everything that can go wrong talking to the broker, with the context needed to act on it.
///
/// Channel-level errors (`channelClosed`, `returned`, `nacked`) leave the connection usable;
/// connection-level ones (`connectionLost`, `connectionClosed`) are followed by automatic
/// recovery unless it is disabled.
public enum AMQPError: Error, Sendable, Equatable {
    /// The URL could not be understood; `reason` says which part.
    case invalidURL(String, reason: String)
    /// No TCP (or TLS) connection could be made: the broker is down, the port is wrong, or TLS failed.
    case connectionRefused(host: String, port: Int, reason: String)
    /// The broker refused the user name, password or virtual host.
    case authenticationFailed(user: String, vhost: String, reason: String)
    /// The broker closed a channel, e.g. 404 NOT_FOUND for a missing exchange or 406
    /// PRECONDITION_FAILED for a declare whose arguments differ from the existing entity.
    case channelClosed(code: UInt16, text: String)
    /// The broker closed the whole connection (e.g. `rabbitmqctl close_connection`, 320 CONNECTION_FORCED).
    case connectionClosed(code: UInt16, text: String)
    /// The socket failed or a heartbeat was missed. Work in flight on it is unknown to have completed.
    case connectionLost(reason: String)
    /// A mandatory message could not be routed to any queue and the broker sent it back.
    case returned(exchange: String, routingKey: String, code: UInt16, text: String)
    /// The broker refused responsibility for a published message (publisher confirms).
    case nacked(exchange: String, routingKey: String)
    /// The broker cancelled the consumer, typically because its queue was deleted.
    case consumerCancelled(queue: String)
    /// The delivery came from a channel or connection that has since closed: acking it now could
    /// acknowledge another message, so it is refused. The broker redelivers the original.
    case staleDelivery(deliveryTag: UInt64)
    /// An operation did not finish in time; the connection is treated as lost.
    case timedOut(operation: String)
    /// The connection or channel was closed by this process.
    case closed
    /// Something the client cannot interpret, e.g. an unexpected frame.
    case protocolError(String)
    /// A name, header or property AMQP cannot carry (e.g. longer than 255 bytes) or a call that
    /// does not fit the channel's state. Nothing was sent; the connection is unaffected.
    case invalidArgument(String)
}

extension AMQPError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalidURL(let url, let reason):
            return "invalid AMQP URL '\(url)': \(reason)"
        case .connectionRefused(let host, let port, let reason):
            return "cannot connect to the broker at \(host):\(port): \(reason)"
        case .authenticationFailed(let user, let vhost, let reason):
            return "the broker refused user '\(user)' on vhost '\(vhost)': \(reason)"
        case .channelClosed(let code, let text):
            return "the broker closed the channel: \(code) \(text)"
        case .connectionClosed(let code, let text):
            return "the broker closed the connection: \(code) \(text)"
        case .connectionLost(let reason):
            return "connection to the broker lost: \(reason)"
        case .returned(let exchange, let routingKey, let code, let text):
            return "message to exchange '\(exchange)' with routing key '\(routingKey)' was returned: \(code) \(text)"
        case .nacked(let exchange, let routingKey):
            return "the broker nacked the message to exchange '\(exchange)' with routing key '\(routingKey)'"
        case .consumerCancelled(let queue):
            return "the broker cancelled the consumer of queue '\(queue)'"
        case .staleDelivery(let tag):
            return "delivery \(tag) belongs to a channel that has closed since; the broker will redeliver it"
        case .timedOut(let operation):
            return "\(operation) timed out"
        case .closed:
            return "the connection or channel is closed"
        case .protocolError(let detail):
            return "AMQP protocol error: \(detail)"
        case .invalidArgument(let detail):
            return "invalid argument: \(detail)"
        }
    }
}
