public import Foundation

/// A mandatory message the broker could not route and sent back.
public struct AMQPReturnedMessage: Sendable {
    public let exchange: String
    public let routingKey: String
    /// 312 NO_ROUTE when no queue is bound for the routing key.
    public let replyCode: UInt16
    public let replyText: String
    public let properties: AMQPProperties
    public let body: Data
}
