// CRabbitMQ: the thin C wrapper over librabbitmq 0.11.
//
// It includes librabbitmq's headers for WarrenAMQP and adds only what Swift cannot call
// directly: the variadic login functions and a frame wait that takes a plain timeout.
// No logic lives here.
#ifndef WARREN_CRABBITMQ_H
#define WARREN_CRABBITMQ_H

#include <stdint.h>
#include <sys/eventfd.h>
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>

/// librabbitmq spells its method numbers as macros with casts, which Swift does not import.
enum {
    WARREN_METHOD_CONNECTION_CLOSE = AMQP_CONNECTION_CLOSE_METHOD,
    WARREN_METHOD_CONNECTION_CLOSE_OK = AMQP_CONNECTION_CLOSE_OK_METHOD,
    WARREN_METHOD_CONNECTION_BLOCKED = AMQP_CONNECTION_BLOCKED_METHOD,
    WARREN_METHOD_CONNECTION_UNBLOCKED = AMQP_CONNECTION_UNBLOCKED_METHOD,
    WARREN_METHOD_CHANNEL_CLOSE = AMQP_CHANNEL_CLOSE_METHOD,
    WARREN_METHOD_CHANNEL_CLOSE_OK = AMQP_CHANNEL_CLOSE_OK_METHOD,
    WARREN_METHOD_BASIC_PUBLISH = AMQP_BASIC_PUBLISH_METHOD,
    WARREN_METHOD_BASIC_DELIVER = AMQP_BASIC_DELIVER_METHOD,
    WARREN_METHOD_BASIC_RETURN = AMQP_BASIC_RETURN_METHOD,
    WARREN_METHOD_BASIC_ACK = AMQP_BASIC_ACK_METHOD,
    WARREN_METHOD_BASIC_NACK = AMQP_BASIC_NACK_METHOD,
    WARREN_METHOD_BASIC_CANCEL = AMQP_BASIC_CANCEL_METHOD,
    WARREN_METHOD_BASIC_CANCEL_OK = AMQP_BASIC_CANCEL_OK_METHOD,
    WARREN_METHOD_BASIC_GET_OK = AMQP_BASIC_GET_OK_METHOD,
    WARREN_METHOD_BASIC_GET_EMPTY = AMQP_BASIC_GET_EMPTY_METHOD,
};

/// The property flags, for the same reason.
enum {
    WARREN_FLAG_CONTENT_TYPE = AMQP_BASIC_CONTENT_TYPE_FLAG,
    WARREN_FLAG_CONTENT_ENCODING = AMQP_BASIC_CONTENT_ENCODING_FLAG,
    WARREN_FLAG_HEADERS = AMQP_BASIC_HEADERS_FLAG,
    WARREN_FLAG_DELIVERY_MODE = AMQP_BASIC_DELIVERY_MODE_FLAG,
    WARREN_FLAG_PRIORITY = AMQP_BASIC_PRIORITY_FLAG,
    WARREN_FLAG_CORRELATION_ID = AMQP_BASIC_CORRELATION_ID_FLAG,
    WARREN_FLAG_REPLY_TO = AMQP_BASIC_REPLY_TO_FLAG,
    WARREN_FLAG_EXPIRATION = AMQP_BASIC_EXPIRATION_FLAG,
    WARREN_FLAG_MESSAGE_ID = AMQP_BASIC_MESSAGE_ID_FLAG,
    WARREN_FLAG_TIMESTAMP = AMQP_BASIC_TIMESTAMP_FLAG,
    WARREN_FLAG_TYPE = AMQP_BASIC_TYPE_FLAG,
    WARREN_FLAG_USER_ID = AMQP_BASIC_USER_ID_FLAG,
    WARREN_FLAG_APP_ID = AMQP_BASIC_APP_ID_FLAG,
};

/// Logs in with SASL PLAIN, announcing `connection_name` (shown in the management UI) and the
/// capabilities WarrenAMQP handles: publisher confirms, basic.nack, consumer cancel notification
/// and authentication failure close. `amqp_login_with_properties` is variadic, so Swift cannot
/// call it.
amqp_rpc_reply_t warren_amqp_login(amqp_connection_state_t _Nonnull state,
                                   const char *_Nonnull vhost,
                                   int channel_max,
                                   int frame_max,
                                   int heartbeat,
                                   const char *_Nonnull user,
                                   const char *_Nonnull password,
                                   const char *_Nonnull connection_name);

/// Waits at most `timeout_us` microseconds (0: only what is already readable) for the next
/// frame. Heartbeats are sent and checked inside. Returns AMQP_STATUS_OK,
/// AMQP_STATUS_TIMEOUT, or another status meaning the connection is lost.
int warren_amqp_wait_frame(amqp_connection_state_t _Nonnull state,
                           amqp_frame_t *_Nonnull frame,
                           int64_t timeout_us);

/// Opens the socket with a connect timeout in microseconds.
int warren_amqp_socket_open(amqp_socket_t *_Nonnull socket,
                            const char *_Nonnull host,
                            int port,
                            int64_t timeout_us);

/// Names the calling thread for the kernel (`top -H`, `perf`, /proc/PID/task/TID/comm), cut
/// to 15 bytes. Foundation's `Thread.name` does not reach the kernel on Linux, and
/// `pthread_setname_np` is a GNU extension Swift's Glibc module does not declare.
void warren_name_this_thread(const char *_Nonnull name);

#endif
