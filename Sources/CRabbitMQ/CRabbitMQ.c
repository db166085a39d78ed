#define _GNU_SOURCE
#include "CRabbitMQ.h"

#include <pthread.h>
#include <string.h>
#include <sys/time.h>

static amqp_table_entry_t warren_bool_entry(const char *key, int value) {
    amqp_table_entry_t entry;
    entry.key = amqp_cstring_bytes(key);
    entry.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    entry.value.value.boolean = value;
    return entry;
}

static amqp_table_entry_t warren_string_entry(const char *key, const char *value) {
    amqp_table_entry_t entry;
    entry.key = amqp_cstring_bytes(key);
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = amqp_cstring_bytes(value);
    return entry;
}

amqp_rpc_reply_t warren_amqp_login(amqp_connection_state_t state, const char *vhost,
                                   int channel_max, int frame_max, int heartbeat,
                                   const char *user, const char *password,
                                   const char *connection_name) {
    amqp_table_entry_t capabilities[] = {
        warren_bool_entry("publisher_confirms", 1),
        warren_bool_entry("basic.nack", 1),
        warren_bool_entry("consumer_cancel_notify", 1),
        warren_bool_entry("authentication_failure_close", 1),
        warren_bool_entry("connection.blocked", 1),
    };
    amqp_table_entry_t entries[3];
    entries[0] = warren_string_entry("connection_name", connection_name);
    entries[1] = warren_string_entry("product", "Warren");
    entries[2].key = amqp_cstring_bytes("capabilities");
    entries[2].value.kind = AMQP_FIELD_KIND_TABLE;
    entries[2].value.value.table.num_entries = sizeof(capabilities) / sizeof(capabilities[0]);
    entries[2].value.value.table.entries = capabilities;
    amqp_table_t properties = {.num_entries = 3, .entries = entries};
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
                                      &properties, AMQP_SASL_METHOD_PLAIN, user, password);
}

int warren_amqp_wait_frame(amqp_connection_state_t state, amqp_frame_t *frame,
                           int64_t timeout_us) {
    struct timeval timeout = {.tv_sec = timeout_us / 1000000, .tv_usec = timeout_us % 1000000};
    return amqp_simple_wait_frame_noblock(state, frame, &timeout);
}

int warren_amqp_socket_open(amqp_socket_t *socket, const char *host, int port,
                            int64_t timeout_us) {
    struct timeval timeout = {.tv_sec = timeout_us / 1000000, .tv_usec = timeout_us % 1000000};
    return amqp_socket_open_noblock(socket, host, port, &timeout);
}

void warren_name_this_thread(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = '\0';
    pthread_setname_np(pthread_self(), cut);
}
