/*
 * users_responder.c: a stand-in for user-service that answers every request on users.rpc with
 * the same body, at almost no cost. It bounds the gateway benchmark: with it in place of the
 * real service, `wrk` measures what the gateway and the broker alone can do on this machine
 * (README, Benchmark).
 *
 *   users-responder amqp://guest:guest@localhost:5672/vhost '{"id":"…","name":"…",…}'
 *
 * Use: start user-service and api-gateway in a vhost, register a user and take a token (README,
 * The HTTP API), stop user-service, start this with that user's JSON as the body, and run
 * `wrk -t2 -c64 -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/users/$ID`.
 *
 * Build: cc -O2 -Wall -o .build/users-responder bench/users_responder.c -lrabbitmq
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amqp.h>
#include <amqp_tcp_socket.h>

static void check(amqp_rpc_reply_t reply, const char *context) {
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) return;
  fprintf(stderr, "users-responder: %s failed (reply type %d)\n", context, reply.reply_type);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: users-responder AMQP_URL BODY\n");
    return 2;
  }
  /* Started from a thread of a Swift program (warren-bench), it may inherit a mask that blocks
   * SIGTERM, and then could not be stopped: take signals again. */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  struct amqp_connection_info info;
  char *url = strdup(argv[1]);
  if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) {
    fprintf(stderr, "users-responder: cannot parse %s\n", argv[1]);
    return 2;
  }
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *socket = amqp_tcp_socket_new(conn);
  if (socket == NULL || amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) {
    fprintf(stderr, "users-responder: cannot reach %s:%d\n", info.host, info.port);
    return 1;
  }
  check(amqp_login(conn, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password), "login");
  amqp_channel_open(conn, 1);
  check(amqp_get_rpc_reply(conn), "channel.open");
  amqp_basic_qos(conn, 1, 0, 256, 0);
  check(amqp_get_rpc_reply(conn), "basic.qos");
  amqp_basic_consume(conn, 1, amqp_cstring_bytes("users.rpc"), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  check(amqp_get_rpc_reply(conn), "basic.consume on users.rpc");

  /* A reply as the wire contract has it (schemas/): JSON, the request's correlation id, x-status. */
  amqp_table_entry_t status = {.key = amqp_cstring_bytes("x-status"),
                               .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("ok")}};
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.headers.num_entries = 1;
  props.headers.entries = &status;
  amqp_bytes_t body = amqp_cstring_bytes(argv[2]);
  for (;;) {
    amqp_envelope_t envelope;
    amqp_maybe_release_buffers(conn);
    check(amqp_consume_message(conn, &envelope, NULL, 0), "consuming");
    props.correlation_id = envelope.message.properties.correlation_id;
    amqp_basic_publish(conn, 1, amqp_empty_bytes, envelope.message.properties.reply_to, 0, 0, &props, body);
    amqp_basic_ack(conn, 1, envelope.delivery_tag, 0);
    amqp_destroy_envelope(&envelope);
  }
}
