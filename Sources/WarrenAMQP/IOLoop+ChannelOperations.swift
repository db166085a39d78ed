import CRabbitMQ
import Foundation
import Logging

/// The operations jobs run on the I/O thread, one librabbitmq call (and its reply) each, and
/// the checks they share: a channel error closes only its channel, anything else loses the
/// connection.
extension IOLoop {
    func check(_ reply: amqp_rpc_reply_t, channel: UInt16, operation: @autoclosure () -> String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            let (code, text) = Self.closeReason(reply.reply)
            if Int(reply.reply.id) == WARREN_METHOD_CHANNEL_CLOSE {
                let error = AMQPError.channelClosed(code: code, text: text)
                acknowledgeChannelClose(channel)
                channelClosed(channel, error: error)
                throw error
            }
            acknowledgeConnectionClose()
            let error = AMQPError.connectionClosed(code: code, text: text)
            lose(error)
            throw error
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_TIMEOUT.rawValue:
            let error = AMQPError.timedOut(operation: operation())
            lose(error)
            throw error
        default:
            let error = AMQPError.connectionLost(reason: "\(operation()): \(Self.replyText(reply))")
            lose(error)
            throw error
        }
    }

    func liveConnection() throws(AMQPError) -> OpaquePointer {
        guard let connection, lostError == nil else { throw lostError ?? .connectionLost(reason: "not connected") }
        return connection
    }

    func ensureOpen(_ state: ChannelState) throws(AMQPError) {
        guard state.machine.needsOpen else { return }
        setCorked(false)  // the open must reach the broker now: we wait for its reply
        let connection = try liveConnection()
        // Confirms of the old incarnation still queued must not resolve the new one's publishes.
        while amqp_frames_enqueued(connection) != 0, lostError == nil { readFrames() }
        let number = state.handle.number
        state.machine.opening()
        amqp_channel_open(connection, number)
        try check(amqp_get_rpc_reply(connection), channel: number, operation: "opening channel \(number)")
        let setup = state.machine.opened()
        state.handle.advanceEpoch()
        state.acks.reset()
        if let prefetch = setup.prefetchCount {
            amqp_basic_qos(connection, number, 0, prefetch, 0)
            try check(amqp_get_rpc_reply(connection), channel: number, operation: "basic.qos")
        }
        if setup.confirms {
            amqp_confirm_select(connection, number)
            try check(amqp_get_rpc_reply(connection), channel: number, operation: "confirm.select")
        }
    }

    func openState(_ handle: ChannelHandle) throws(AMQPError) -> ChannelState {
        guard let state = channels[handle.number], state.handle === handle else { throw .closed }
        try ensureOpen(state)
        return state
    }

    func openChannel() throws(AMQPError) -> ChannelHandle {
        let limit = UInt16(clamping: connection.map { Int(amqp_get_channel_max($0)) }.flatMap { $0 > 0 ? $0 : nil } ?? configuration.channelMax)
        // A channel past the negotiated maximum is a connection error for the broker: say why
        // here rather than lose the connection over it.
        guard limit > Self.controlChannel else {
            throw .invalidArgument(
                "channel_max is \(limit) (the URL's or the broker's), which leaves no channel to open: channel \(Self.controlChannel) is the connection's own, so at least \(Self.controlChannel + 1) is needed")
        }
        guard let number = (Self.controlChannel + 1...limit).first(where: { channels[$0] == nil }) else {
            throw .protocolError("all \(limit) channels are in use (channel_max, the URL's or the broker's)")
        }
        let state = ChannelState(handle: ChannelHandle(number: number, jobs: jobs, frameMax: frameMax))
        channels[number] = state
        do {
            try ensureOpen(state)
        } catch {
            channels.removeValue(forKey: number)
            throw error
        }
        return state.handle
    }

    func closeChannel(_ handle: ChannelHandle) {
        guard let state = channels[handle.number], state.handle === handle else { return }
        if state.machine.isOpen, let connection, lostError == nil {
            let reply = amqp_channel_close(connection, handle.number, AMQP_REPLY_SUCCESS)
            if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, Int(reply.reply.id) == WARREN_METHOD_CHANNEL_CLOSE {
                // The broker was closing it at the same time: it still needs our close-ok, or the
                // channel number stays half-closed and its next open kills the connection.
                acknowledgeChannelClose(handle.number)
            } else if reply.reply_type != AMQP_RESPONSE_NORMAL, reply.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION {
                lose(.connectionLost(reason: "closing channel: \(Self.replyText(reply))"))
            }
        }
        channels.removeValue(forKey: handle.number)
        handle.advanceEpoch()
        execute(state.machine.closing())
    }

    func setReturnHandler(_ handle: ChannelHandle, _ handler: @escaping @Sendable (AMQPReturnedMessage) -> Void) throws(AMQPError) {
        try openState(handle).returnHandler = handler
    }

    func setPrefetch(_ handle: ChannelHandle, count: UInt16) throws(AMQPError) {
        let state = try openState(handle)
        let connection = try liveConnection()
        amqp_basic_qos(connection, handle.number, 0, count, 0)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "basic.qos")
        state.machine.prefetchSet(count)
    }

    func enableConfirms(_ handle: ChannelHandle) throws(AMQPError) {
        let state = try openState(handle)
        guard !state.machine.confirmMode else { return }
        let connection = try liveConnection()
        amqp_confirm_select(connection, handle.number)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "confirm.select")
        state.machine.confirmsEnabled()
        handle.confirmMode = true
    }

    func declare(_ entry: TopologyRecord.Entry, on channel: UInt16) throws(AMQPError) {
        let connection = try liveConnection()
        switch entry {
        case .exchange(let exchange):
            amqp_exchange_declare(
                connection, channel, scratch.bytes(exchange.name), scratch.bytes(exchange.type), 0,
                exchange.durable ? 1 : 0, exchange.autoDelete ? 1 : 0, exchange.internal ? 1 : 0, scratch.table(exchange.arguments))
            try check(amqp_get_rpc_reply(connection), channel: channel, operation: "declaring exchange '\(exchange.name)'")
        case .queue(let queue):
            _ = try declareQueue(queue, passive: false, on: channel)
        case .binding(let binding):
            amqp_queue_bind(
                connection, channel, scratch.bytes(binding.queue), scratch.bytes(binding.exchange),
                scratch.bytes(binding.routingKey), scratch.table(binding.arguments))
            try check(amqp_get_rpc_reply(connection), channel: channel, operation: "binding queue '\(binding.queue)' to '\(binding.exchange)'")
        }
    }

    func declare(_ handle: ChannelHandle, _ entry: TopologyRecord.Entry) throws(AMQPError) {
        _ = try openState(handle)
        try declare(entry, on: handle.number)
        topology.record(entry)
    }

    func declareQueue(_ queue: TopologyRecord.Queue, passive: Bool, on channel: UInt16) throws(AMQPError) -> AMQPQueueInfo {
        let connection = try liveConnection()
        let ok = amqp_queue_declare(
            connection, channel, scratch.bytes(queue.name), passive ? 1 : 0, queue.durable ? 1 : 0,
            queue.exclusive ? 1 : 0, queue.autoDelete ? 1 : 0, scratch.table(queue.arguments))
        try check(amqp_get_rpc_reply(connection), channel: channel, operation: "declaring queue '\(queue.name)'")
        guard let ok else { throw .protocolError("queue.declare-ok missing") }
        return AMQPQueueInfo(name: String(amqpBytes: ok.pointee.queue), messageCount: ok.pointee.message_count, consumerCount: ok.pointee.consumer_count)
    }

    func declareQueue(_ handle: ChannelHandle, _ queue: TopologyRecord.Queue, passive: Bool) throws(AMQPError) -> AMQPQueueInfo {
        _ = try openState(handle)
        let info = try declareQueue(queue, passive: passive, on: handle.number)
        // A server-named queue cannot be declared again under its name ('amq.' is reserved):
        // it is not recovered, and neither are its consumers (they end with an error).
        if !passive, !queue.name.isEmpty {
            topology.record(.queue(queue))
        }
        return info
    }

    func declareExchangePassive(_ handle: ChannelHandle, name: String) throws(AMQPError) {
        _ = try openState(handle)
        let connection = try liveConnection()
        amqp_exchange_declare(connection, handle.number, scratch.bytes(name), scratch.bytes("direct"), 1, 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "checking exchange '\(name)'")
    }

    func unbindQueue(_ handle: ChannelHandle, _ binding: TopologyRecord.Binding) throws(AMQPError) {
        _ = try openState(handle)
        let connection = try liveConnection()
        amqp_queue_unbind(
            connection, handle.number, scratch.bytes(binding.queue), scratch.bytes(binding.exchange),
            scratch.bytes(binding.routingKey), scratch.table(binding.arguments))
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "unbinding queue '\(binding.queue)'")
        topology.unbind(queue: binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
    }

    func deleteQueue(_ handle: ChannelHandle, name: String, ifUnused: Bool, ifEmpty: Bool) throws(AMQPError) -> UInt32 {
        _ = try openState(handle)
        let connection = try liveConnection()
        let ok = amqp_queue_delete(connection, handle.number, scratch.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "deleting queue '\(name)'")
        topology.deleteQueue(name)
        return ok?.pointee.message_count ?? 0
    }

    func deleteExchange(_ handle: ChannelHandle, name: String, ifUnused: Bool) throws(AMQPError) {
        _ = try openState(handle)
        let connection = try liveConnection()
        amqp_exchange_delete(connection, handle.number, scratch.bytes(name), ifUnused ? 1 : 0)
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "deleting exchange '\(name)'")
        topology.deleteExchange(name)
    }

    func purgeQueue(_ handle: ChannelHandle, name: String) throws(AMQPError) -> UInt32 {
        _ = try openState(handle)
        let connection = try liveConnection()
        let ok = amqp_queue_purge(connection, handle.number, scratch.bytes(name))
        try check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "purging queue '\(name)'")
        return ok?.pointee.message_count ?? 0
    }

    /// `basic.publish` as librabbitmq writes it, but with the body cut into frames of the agreed
    /// `frameMax`: the method frame, the content header, then the body frames.
    static func publishInFrames(
        _ connection: OpaquePointer, channel: UInt16, exchange: amqp_bytes_t, routingKey: amqp_bytes_t, mandatory: Bool,
        properties: inout amqp_basic_properties_t, body: amqp_bytes_t, frameMax: Int
    ) -> Int32 {
        var method = amqp_basic_publish_t(ticket: 0, exchange: exchange, routing_key: routingKey, mandatory: mandatory ? 1 : 0, immediate: 0)
        var status = amqp_send_method(connection, channel, amqp_method_number_t(WARREN_METHOD_BASIC_PUBLISH), &method)
        guard status == AMQP_STATUS_OK.rawValue else { return status }
        var frame = amqp_frame_t()
        frame.frame_type = UInt8(AMQP_FRAME_HEADER)
        frame.channel = channel
        frame.payload.properties.class_id = UInt16(AMQP_BASIC_CLASS)
        frame.payload.properties.body_size = UInt64(body.len)
        status = withUnsafeMutablePointer(to: &properties) { pointer in
            frame.payload.properties.decoded = UnsafeMutableRawPointer(pointer)
            return amqp_send_frame(connection, &frame)
        }
        guard status == AMQP_STATUS_OK.rawValue, let bytes = body.bytes else { return status }
        let payloadMax = frameMax - 8
        var offset = 0
        while offset < body.len {
            let count = min(payloadMax, body.len - offset)
            frame.frame_type = UInt8(AMQP_FRAME_BODY)
            frame.payload.body_fragment = amqp_bytes_t(len: count, bytes: bytes + offset)
            status = amqp_send_frame(connection, &frame)
            guard status == AMQP_STATUS_OK.rawValue else { return status }
            offset += count
        }
        return status
    }

    func publish(
        _ handle: ChannelHandle, body: Data, exchange: String, routingKey: String, mandatory: Bool,
        properties: AMQPProperties, waiter: ConfirmWaiter?
    ) {
        let state: ChannelState
        let connection: OpaquePointer
        do {
            state = try openState(handle)
            connection = try liveConnection()
        } catch {
            logPublishFailure(error, waiter: waiter, exchange: exchange, routingKey: routingKey)
            return
        }
        var rawProperties = scratch.properties(properties)
        let status = body.withUnsafeBytes { buffer in
            let body = amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress))
            let exchange = scratch.bytes(exchange)
            let routingKey = scratch.bytes(routingKey)
            // librabbitmq cuts a body by its own frame_max, raised above the agreed one (`connect`).
            guard buffer.count > frameMax - 8 else {
                return amqp_basic_publish(connection, handle.number, exchange, routingKey, mandatory ? 1 : 0, 0, &rawProperties, body)
            }
            return Self.publishInFrames(
                connection, channel: handle.number, exchange: exchange, routingKey: routingKey, mandatory: mandatory, properties: &rawProperties,
                body: body, frameMax: frameMax)
        }
        guard status == AMQP_STATUS_OK.rawValue else {
            let error = AMQPError.connectionLost(reason: "publishing: \(Self.statusText(status))")
            lose(error)
            logPublishFailure(error, waiter: waiter, exchange: exchange, routingKey: routingKey)
            return
        }
        if state.machine.confirmMode {
            _ = state.machine.published(
                waiter, exchange: exchange, routingKey: routingKey,
                mandatory: mandatory ? .init(exchange: exchange, routingKey: routingKey, body: body) : nil)
        } else {
            waiter?.resume()
        }
    }

    /// A publish without confirms has no one waiting to hear it failed: say so in the log.
    func logPublishFailure(_ error: AMQPError, waiter: ConfirmWaiter?, exchange: String, routingKey: String) {
        if let waiter {
            waiter.resume(throwing: error)
        } else {
            logger.warning("publish failed", metadata: ["exchange": "\(exchange)", "routing_key": "\(routingKey)", "error": "\(error)"])
        }
    }

    func startConsumer(_ consumer: ConsumerState, on state: ChannelState) throws(AMQPError) {
        let connection = try liveConnection()
        amqp_basic_consume(
            connection, state.handle.number, scratch.bytes(consumer.queue), scratch.bytes(consumer.tag), 0,
            consumer.noAck ? 1 : 0, consumer.exclusive ? 1 : 0, scratch.table(consumer.arguments))
        try check(amqp_get_rpc_reply(connection), channel: state.handle.number, operation: "consuming from queue '\(consumer.queue)'")
        state.machine.consumerStarted(consumer)
    }

    func consume(_ handle: ChannelHandle, consumer: ConsumerState) throws(AMQPError) {
        let state = try openState(handle)
        try startConsumer(consumer, on: state)
    }

    func cancelConsumer(_ handle: ChannelHandle, tag: String) {
        guard let state = channels[handle.number], state.handle === handle,
            let cancel = state.machine.cancelRequested(tag: tag)
        else { return }
        cancel.consumer.handler(.ended(nil))
        guard cancel.sendCancel, let connection, lostError == nil else { return }
        amqp_basic_cancel(connection, handle.number, scratch.bytes(tag))
        try? check(amqp_get_rpc_reply(connection), channel: handle.number, operation: "cancelling consumer")
        // After cancel-ok the broker sends nothing more for this tag; what it sent before is
        // queued now and handed back by deliverMessage.
        while lostError == nil, amqp_frames_enqueued(connection) != 0 { readFrames() }
        state.machine.cancelFinished(tag: tag)
    }

    func get(_ handle: ChannelHandle, queue: String, noAck: Bool) throws(AMQPError) -> AMQPDelivery? {
        let state = try openState(handle)
        // Deliveries arriving during basic.get would be queued between its reply and content,
        // which librabbitmq cannot untangle.
        guard state.machine.consumers.isEmpty else {
            throw .invalidArgument("basic.get on a channel with consumers: use a channel without consumers")
        }
        let connection = try liveConnection()
        let reply = amqp_basic_get(connection, handle.number, scratch.bytes(queue), noAck ? 1 : 0)
        try check(reply, channel: handle.number, operation: "basic.get from '\(queue)'")
        guard Int(reply.reply.id) == WARREN_METHOD_BASIC_GET_OK, let decoded = reply.reply.decoded else { return nil }
        let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        let exchange = String(amqpBytes: ok.exchange)
        let (routingKey, exactKey) = String.decoding(amqpBytes: ok.routing_key)
        guard case (var properties, let body)? = readContent(channel: handle.number) else { throw lostError ?? .connectionLost(reason: "basic.get") }
        properties.noteRoutingKey(exact: exactKey)
        if !noAck { state.acks.delivered(ok.delivery_tag) }
        return AMQPDelivery(
            body: body, properties: properties, exchange: exchange, routingKey: routingKey, deliveryTag: ok.delivery_tag,
            redelivered: ok.redelivered != 0, consumerTag: nil,
            acknowledger: noAck ? nil : AMQPDelivery.Acknowledger(channel: handle, epoch: state.handle.epoch),
            messageCount: ok.message_count)
    }

    enum Acknowledgement {
        case ack(multiple: Bool)
        case nack(multiple: Bool, requeue: Bool)
        case reject(requeue: Bool)
    }

    /// Acks only on the channel epoch the delivery came from: after a reopen the same tag names
    /// another message.
    func acknowledge(_ handle: ChannelHandle, epoch: UInt64, deliveryTag: UInt64, _ acknowledgement: Acknowledgement) {
        guard let state = channels[handle.number], state.handle === handle, state.machine.isOpen, handle.epoch == epoch,
            let connection, lostError == nil
        else {
            logger.debug("dropped an acknowledgement for a delivery from a closed channel", metadata: ["delivery_tag": "\(deliveryTag)"])
            return
        }
        // A single ack waits for the end of the batch of jobs, to leave with the others
        // (`AckCoalescer`); anything else goes now, after the acks asked for before it.
        if case .ack(multiple: false) = acknowledgement {
            state.acks.ackRequested(deliveryTag)
            channelsWithAcks.insert(handle.number)
            return
        }
        flushAcks(state)
        guard lostError == nil else { return }
        let status: Int32
        switch acknowledgement {
        case .ack(let multiple):
            status = amqp_basic_ack(connection, handle.number, deliveryTag, multiple ? 1 : 0)
            state.acks.settled(deliveryTag, multiple: multiple)
        case .nack(let multiple, let requeue):
            status = amqp_basic_nack(connection, handle.number, deliveryTag, multiple ? 1 : 0, requeue ? 1 : 0)
            state.acks.settled(deliveryTag, multiple: multiple)
        case .reject(let requeue):
            status = amqp_basic_reject(connection, handle.number, deliveryTag, requeue ? 1 : 0)
            state.acks.settled(deliveryTag, multiple: false)
        }
        if status != AMQP_STATUS_OK.rawValue {
            lose(.connectionLost(reason: "acknowledging: \(Self.statusText(status))"))
        }
    }

    /// Sends the acks every channel gathered during this batch of jobs.
    func flushAcks() {
        guard !channelsWithAcks.isEmpty else { return }
        for number in channelsWithAcks {
            if let state = channels[number] { flushAcks(state) }
        }
        channelsWithAcks.removeAll(keepingCapacity: true)
    }

    /// Sends the acks `state` gathered; dropped if its channel or the connection is gone (the
    /// broker then requeues those deliveries itself).
    private func flushAcks(_ state: ChannelState) {
        guard state.acks.hasRequests else { return }
        let acks = state.acks.flush()
        guard state.machine.isOpen, let connection, lostError == nil else { return }
        for ack in acks {
            let status = amqp_basic_ack(connection, state.handle.number, ack.deliveryTag, ack.multiple ? 1 : 0)
            if status != AMQP_STATUS_OK.rawValue {
                lose(.connectionLost(reason: "acknowledging: \(Self.statusText(status))"))
                return
            }
        }
    }

    // MARK: - Helpers

    static func statusText(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    static func replyText(_ reply: amqp_rpc_reply_t) -> String {
        switch reply.reply_type {
        case AMQP_RESPONSE_LIBRARY_EXCEPTION: statusText(reply.library_error)
        case AMQP_RESPONSE_SERVER_EXCEPTION: "\(closeReason(reply.reply))"
        default: "no reply"
        }
    }

    /// The code and text of a channel.close or connection.close (both have the same layout).
    static func closeReason(_ method: amqp_method_t) -> (UInt16, String) {
        guard let decoded = method.decoded else { return (0, "") }
        switch Int(method.id) {
        case WARREN_METHOD_CHANNEL_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            return (close.reply_code, String(amqpBytes: close.reply_text))
        case WARREN_METHOD_CONNECTION_CLOSE:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            return (close.reply_code, String(amqpBytes: close.reply_text))
        default:
            return (0, "unexpected method \(method.id)")
        }
    }
}
