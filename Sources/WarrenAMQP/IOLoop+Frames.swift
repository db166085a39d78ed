import CRabbitMQ
import Foundation
import Logging

/// Reading and dispatching what the broker sends: deliveries, confirms, returns, cancels,
/// channel and connection closes, flow (blocked/unblocked).
extension IOLoop {
    func readFrames() {
        guard let connection else { return }
        lastRead = .now
        var frame = amqp_frame_t()
        // Bounded, so that a flood of deliveries cannot starve the job queue (acks, publishes).
        for _ in 0..<512 {
            let status = warren_amqp_wait_frame(connection, &frame, 0)
            if status == AMQP_STATUS_TIMEOUT.rawValue { break }
            guard status == AMQP_STATUS_OK.rawValue else {
                lose(.connectionLost(reason: Self.statusText(status)))
                return
            }
            dispatch(frame)
            if lostError != nil { return }
        }
        amqp_maybe_release_buffers(connection)
    }

    func dispatch(_ frame: amqp_frame_t) {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD), let decoded = frame.payload.method.decoded else { return }
        let channel = frame.channel
        switch Int(frame.payload.method.id) {
        case WARREN_METHOD_BASIC_DELIVER:
            let deliver = decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            deliverMessage(deliver, channel: channel)
        case WARREN_METHOD_BASIC_ACK:
            let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            confirm(channel: channel, deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0, ack: true)
        case WARREN_METHOD_BASIC_NACK:
            let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            confirm(channel: channel, deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0, ack: false)
        case WARREN_METHOD_BASIC_RETURN:
            let returned = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            returnMessage(returned, channel: channel)
        case WARREN_METHOD_BASIC_CANCEL:
            let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            serverCancelled(tag: String(amqpBytes: cancel.consumer_tag), channel: channel)
        case WARREN_METHOD_CHANNEL_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            acknowledgeChannelClose(channel)
            channelClosed(channel, error: .channelClosed(code: close.reply_code, text: String(amqpBytes: close.reply_text)))
        case WARREN_METHOD_CONNECTION_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            acknowledgeConnectionClose()
            lose(.connectionClosed(code: close.reply_code, text: String(amqpBytes: close.reply_text)))
        case WARREN_METHOD_CONNECTION_BLOCKED:
            brokerBlocked(true)
        case WARREN_METHOD_CONNECTION_UNBLOCKED:
            brokerBlocked(false)
        default:
            break
        }
    }

    func deliverMessage(_ deliver: amqp_basic_deliver_t, channel number: UInt16) {
        let tag = String(amqpBytes: deliver.consumer_tag)
        let exchange = String(amqpBytes: deliver.exchange)
        let (routingKey, exactKey) = String.decoding(amqpBytes: deliver.routing_key)
        guard case (var properties, let body)? = readContent(channel: number) else { return }
        properties.noteRoutingKey(exact: exactKey)
        guard let state = channels[number] else { return }
        let consumer: ConsumerState
        switch state.machine.route(deliveryFor: tag) {
        case .consumer(let found):
            consumer = found
            if !found.noAck { state.acks.delivered(deliver.delivery_tag) }
        case .reject:
            if let connection { amqp_basic_reject(connection, number, deliver.delivery_tag, 1) }
            return
        case .drop:
            // Perhaps unacknowledged at the broker: no multiple ack may reach past it.
            state.acks.delivered(deliver.delivery_tag)
            return
        }
        let delivery = AMQPDelivery(
            body: body, properties: properties, exchange: exchange, routingKey: routingKey,
            deliveryTag: deliver.delivery_tag, redelivered: deliver.redelivered != 0, consumerTag: tag,
            acknowledger: consumer.noAck ? nil : AMQPDelivery.Acknowledger(channel: state.handle, epoch: state.handle.epoch))
        consumer.handler(.delivery(delivery))
    }

    /// Reads the header and body frames that follow a basic.deliver, basic.return or basic.get-ok.
    func readContent(channel: UInt16) -> (AMQPProperties, Data)? {
        guard let connection else { return nil }
        var message = amqp_message_t()
        let reply = amqp_read_message(connection, channel, &message, 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            lose(.connectionLost(reason: "reading message content: \(Self.replyText(reply))"))
            return nil
        }
        defer { amqp_destroy_message(&message) }
        return (decodeProperties(message.properties), Data(amqpBytes: message.body))
    }

    func confirm(channel: UInt16, deliveryTag: UInt64, multiple: Bool, ack: Bool) {
        guard let state = channels[channel] else { return }
        for (waiter, result) in state.machine.confirmed(deliveryTag: deliveryTag, multiple: multiple, ack: ack) {
            waiter?.resume(with: result.mapError { $0 as any Error })
        }
    }

    func returnMessage(_ returned: amqp_basic_return_t, channel: UInt16) {
        let exchange = String(amqpBytes: returned.exchange)
        let routingKey = String(amqpBytes: returned.routing_key)
        let text = String(amqpBytes: returned.reply_text)
        guard let (properties, body) = readContent(channel: channel), let state = channels[channel] else { return }
        if let handler = state.returnHandler {
            handler(AMQPReturnedMessage(exchange: exchange, routingKey: routingKey, replyCode: returned.reply_code, replyText: text, properties: properties, body: body))
        }
        let tracked = state.machine.returned(exchange: exchange, routingKey: routingKey, body: body, code: returned.reply_code, text: text)
        if !tracked, state.returnHandler == nil {
            logger.warning("message returned by the broker", metadata: ["exchange": "\(exchange)", "routing_key": "\(routingKey)", "reason": "\(returned.reply_code) \(text)"])
        }
    }

    func serverCancelled(tag: String, channel: UInt16) {
        guard let consumer = channels[channel]?.machine.cancelledByBroker(tag: tag) else { return }
        logger.info("the broker cancelled a consumer", metadata: ["queue": "\(consumer.queue)", "consumer_tag": "\(tag)"])
        consumer.handler(.ended(.consumerCancelled(queue: consumer.queue)))
    }

    func acknowledgeChannelClose(_ channel: UInt16) {
        guard let connection else { return }
        var closeOK = amqp_channel_close_ok_t(dummy: 0)
        amqp_send_method(connection, channel, amqp_method_number_t(WARREN_METHOD_CHANNEL_CLOSE_OK), &closeOK)
    }

    func acknowledgeConnectionClose() {
        guard let connection else { return }
        var closeOK = amqp_connection_close_ok_t(dummy: 0)
        amqp_send_method(connection, 0, amqp_method_number_t(WARREN_METHOD_CONNECTION_CLOSE_OK), &closeOK)
    }

    /// The broker closed one channel: everything waiting on it fails with the broker's reason.
    /// It reopens on next use; its consumers end, since their deliveries cannot be acked any more.
    func channelClosed(_ number: UInt16, error: AMQPError) {
        guard let state = channels[number] else { return }
        logger.debug("the broker closed a channel", metadata: ["channel": "\(number)", "error": "\(error)"])
        state.handle.advanceEpoch()
        state.acks.reset()
        execute(state.machine.closedByBroker(error))
    }

    /// `connection.blocked` / `unblocked`: a resource alarm on the broker holds publishes.
    private func brokerBlocked(_ blocked: Bool) {
        switch machine.brokerBlocked(blocked) {
        case .block:
            status.setBlocked(true)
            logger.warning("the broker blocked publishing on this connection (memory or disk alarm)")
        case .unblock:
            status.setBlocked(false)
            logger.info("the broker unblocked publishing on this connection")
        case .ignore:
            break
        }
    }

    func lose(_ error: AMQPError) {
        if lostError == nil { lostError = error }
    }
}
