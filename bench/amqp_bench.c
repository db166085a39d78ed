/*
 * amqp_bench.c: the raw librabbitmq (0.11) baseline for Warren's AMQP benchmark.
 *
 * It must do the same work as `warren-bench amqp` in Sources/WarrenBench, so the
 * two can be compared: same cases, same options, same message sizes, same
 * queue settings, same JSON output (one line on stdout; diagnostics on stderr).
 *
 *   amqp-bench-c rpc     [--inflight N] [--seconds S]    (64, 5)
 *                        [--queue-type classic|quorum]   (classic: non-durable, auto-delete;
 *                                                         quorum: durable, as Warren's default)
 *   amqp-bench-c publish [--messages M] [--window W]     (100000, 1000)
 *   amqp-bench-c consume [--messages M] [--prefetch P]   (100000, 256)
 *   every case also takes --url amqp://guest:guest@localhost:5672/
 *
 * Build: cc -O2 -Wall -o .build/amqp-bench-c bench/amqp_bench.c -lrabbitmq -lpthread
 */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#define BODY_SIZE 100
#define REPLY_TO "amq.rabbitmq.reply-to"

static char body_bytes[BODY_SIZE];
static amqp_bytes_t body = {BODY_SIZE, body_bytes};

struct options {
  const char *url;
  long inflight, messages, window, prefetch;
  double seconds;
  int quorum; /* rpc: the request queue is a quorum queue */
};
static struct options opt = {"amqp://guest:guest@localhost:5672/", 64, 100000, 1000, 256, 5, 0};

/* SIGINT or SIGTERM: each case stops at its next step and deletes its queue (a durable queue,
 * quorum or classic, would otherwise outlive the program with its messages). */
static volatile sig_atomic_t interrupted;
static void on_signal(int signal) { (void)signal; interrupted = 1; }

/* ---- errors ---------------------------------------------------------------- */

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "amqp-bench-c: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  exit(1);
}

static void die_on_error(int status, const char *context) {
  if (status < 0) die("%s: %s", context, amqp_error_string2(status));
}

static void die_on_close_method(amqp_method_t m, const char *context) {
  if (m.id == AMQP_CONNECTION_CLOSE_METHOD) {
    amqp_connection_close_t *c = m.decoded;
    die("%s: connection closed by broker: %u %.*s", context, c->reply_code,
        (int)c->reply_text.len, (char *)c->reply_text.bytes);
  }
  if (m.id == AMQP_CHANNEL_CLOSE_METHOD) {
    amqp_channel_close_t *c = m.decoded;
    die("%s: channel closed by broker: %u %.*s", context, c->reply_code,
        (int)c->reply_text.len, (char *)c->reply_text.bytes);
  }
}

static void die_on_amqp_error(amqp_rpc_reply_t r, const char *context) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_NONE:
      die("%s: missing RPC reply", context);
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      die("%s: %s", context, amqp_error_string2(r.library_error));
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      die_on_close_method(r.reply, context);
      die("%s: unexpected server method 0x%08X", context, r.reply.id);
  }
}

static int is_timeout(amqp_rpc_reply_t r) {
  return r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
         r.library_error == AMQP_STATUS_TIMEOUT;
}

/* ---- helpers ----------------------------------------------------------------- */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Opens a connection with channel 1 open. */
static amqp_connection_state_t open_connection(void) {
  struct amqp_connection_info info;
  char *url = strdup(opt.url);
  if (url == NULL) die("out of memory");
  die_on_error(amqp_parse_url(url, &info), "parsing --url");
  if (info.ssl) die("amqps:// is not supported");
  /* "amqp://host/" parses to vhost "", which means the default vhost "/". */
  const char *vhost = info.vhost[0] ? info.vhost : "/";

  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *socket = amqp_tcp_socket_new(conn);
  if (socket == NULL) die("creating TCP socket");
  die_on_error(amqp_socket_open(socket, info.host, info.port), "opening TCP socket");
  die_on_amqp_error(amqp_login(conn, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                               info.user, info.password),
                    "logging in");
  amqp_channel_open(conn, 1);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "opening channel");
  free(url);
  return conn;
}

static void close_connection(amqp_connection_state_t conn) {
  die_on_amqp_error(amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS), "closing channel");
  die_on_amqp_error(amqp_connection_close(conn, AMQP_REPLY_SUCCESS), "closing connection");
  die_on_error(amqp_destroy_connection(conn), "ending connection");
}

static void declare_queue(amqp_connection_state_t conn, const char *name, int durable,
                          int auto_delete) {
  amqp_queue_declare(conn, 1, amqp_cstring_bytes(name), 0, durable, 0, auto_delete,
                     amqp_empty_table);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "declaring queue");
}

static void delete_queue(amqp_connection_state_t conn, const char *name) {
  amqp_queue_delete(conn, 1, amqp_cstring_bytes(name), 0, 0);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "deleting queue");
}

static void basic_qos(amqp_connection_state_t conn, long prefetch) {
  amqp_basic_qos(conn, 1, 0, (uint16_t)prefetch, 0);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "basic.qos");
}

static void basic_consume(amqp_connection_state_t conn, const char *queue, int no_ack) {
  amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, no_ack, 0,
                     amqp_empty_table);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "basic.consume");
}

/* Publishes `messages` persistent messages to `queue` on channel 1 (which must be in
 * confirm mode) with at most `window` unconfirmed; returns the seconds from the
 * first publish to the last confirm. */
static double publish_confirmed(amqp_connection_state_t conn, const char *queue,
                                long messages, long window) {
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
  props.delivery_mode = 2;
  amqp_bytes_t routing_key = amqp_cstring_bytes(queue);
  uint64_t published = 0, confirmed = 0, last_acked = 0;

  double start = now();
  while (confirmed < (uint64_t)messages && !interrupted) {
    while (published < (uint64_t)messages && published - confirmed < (uint64_t)window) {
      die_on_error(amqp_basic_publish(conn, 1, amqp_empty_bytes, routing_key, 0, 0, &props, body),
                   "basic.publish");
      published++;
    }
    amqp_frame_t frame;
    die_on_error(amqp_simple_wait_frame(conn, &frame), "waiting for confirms");
    if (frame.frame_type != AMQP_FRAME_METHOD)
      die("waiting for confirms: unexpected frame type %d", frame.frame_type);
    die_on_close_method(frame.payload.method, "waiting for confirms");
    if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
      amqp_basic_nack_t *nack = frame.payload.method.decoded;
      die("broker nacked delivery tag %llu", (unsigned long long)nack->delivery_tag);
    }
    if (frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
      die("waiting for confirms: unexpected method 0x%08X", frame.payload.method.id);
    amqp_basic_ack_t *ack = frame.payload.method.decoded;
    /* RabbitMQ confirms in order on a channel: `multiple` covers every tag since last_acked. */
    if (ack->multiple) {
      if (ack->delivery_tag > last_acked) confirmed += ack->delivery_tag - last_acked;
    } else {
      confirmed += 1;
    }
    if (ack->delivery_tag > last_acked) last_acked = ack->delivery_tag;
    amqp_maybe_release_buffers(conn);
  }
  return now() - start;
}

/* ---- case: publish ------------------------------------------------------------ */

static void run_publish(void) {
  char queue[64];
  snprintf(queue, sizeof queue, "bench.publish.%d", (int)getpid());
  amqp_connection_state_t conn = open_connection();
  declare_queue(conn, queue, 1, 0);
  amqp_confirm_select(conn, 1);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "confirm.select");

  double elapsed = publish_confirmed(conn, queue, opt.messages, opt.window);

  delete_queue(conn, queue);
  close_connection(conn);
  if (interrupted) return;
  printf("{\"case\":\"publish\",\"messages\":%ld,\"messages_per_sec\":%.1f}\n", opt.messages,
         opt.messages / elapsed);
}

/* ---- case: consume ------------------------------------------------------------ */

static void run_consume(void) {
  char queue[64];
  snprintf(queue, sizeof queue, "bench.consume.%d", (int)getpid());
  amqp_connection_state_t conn = open_connection();
  declare_queue(conn, queue, 1, 0);
  amqp_confirm_select(conn, 1);
  die_on_amqp_error(amqp_get_rpc_reply(conn), "confirm.select");
  publish_confirmed(conn, queue, opt.messages, opt.window); /* prefill, not timed */

  basic_qos(conn, opt.prefetch);
  double start = now();
  basic_consume(conn, queue, 0);
  for (long i = 0; i < opt.messages && !interrupted; i++) {
    amqp_envelope_t envelope;
    die_on_amqp_error(amqp_consume_message(conn, &envelope, NULL, 0), "consuming");
    die_on_error(amqp_basic_ack(conn, 1, envelope.delivery_tag, 0), "basic.ack");
    amqp_destroy_envelope(&envelope);
    amqp_maybe_release_buffers(conn);
  }
  double elapsed = now() - start;

  delete_queue(conn, queue); /* also cancels our consumer */
  close_connection(conn);
  if (interrupted) return;
  printf("{\"case\":\"consume\",\"messages\":%ld,\"prefetch\":%ld,\"messages_per_sec\":%.1f}\n",
         opt.messages, opt.prefetch, opt.messages / elapsed);
}

/* ---- case: rpc ---------------------------------------------------------------- */

static char rpc_queue[64];
static atomic_int rpc_stop;
static sem_t rpc_server_ready;

/* The server: its own connection, used only by this thread. */
static void *rpc_server(void *arg) {
  (void)arg;
  amqp_connection_state_t conn = open_connection();
  if (opt.quorum) {
    /* As Warren declares <service>.rpc by default (DeadLettering.swift): durable, quorum. */
    amqp_table_entry_t type = {amqp_cstring_bytes("x-queue-type"),
                               {AMQP_FIELD_KIND_UTF8, {.bytes = amqp_cstring_bytes("quorum")}}};
    amqp_table_t arguments = {1, &type};
    amqp_queue_declare(conn, 1, amqp_cstring_bytes(rpc_queue), 0, 1, 0, 0, arguments);
    die_on_amqp_error(amqp_get_rpc_reply(conn), "declaring a quorum queue");
  } else {
    declare_queue(conn, rpc_queue, 0, 1);
  }
  basic_qos(conn, opt.inflight * 2 > 16 ? opt.inflight * 2 : 16);
  basic_consume(conn, rpc_queue, 0);
  sem_post(&rpc_server_ready);

  struct timeval timeout = {0, 100 * 1000}; /* so that rpc_stop is seen */
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  while (!atomic_load(&rpc_stop)) {
    amqp_envelope_t envelope;
    amqp_rpc_reply_t r = amqp_consume_message(conn, &envelope, &timeout, 0);
    if (is_timeout(r)) continue;
    die_on_amqp_error(r, "rpc server: consuming");
    amqp_basic_properties_t *req = &envelope.message.properties;
    if (!(req->_flags & AMQP_BASIC_REPLY_TO_FLAG) || !(req->_flags & AMQP_BASIC_CORRELATION_ID_FLAG))
      die("rpc server: request without reply_to or correlation_id");
    props.correlation_id = req->correlation_id;
    die_on_error(amqp_basic_publish(conn, 1, amqp_empty_bytes, req->reply_to, 0, 0, &props,
                                    envelope.message.body),
                 "rpc server: publishing reply");
    die_on_error(amqp_basic_ack(conn, 1, envelope.delivery_tag, 0), "rpc server: basic.ack");
    amqp_destroy_envelope(&envelope);
    amqp_maybe_release_buffers(conn);
  }

  delete_queue(conn, rpc_queue);
  close_connection(conn);
  return NULL;
}

struct slot {
  uint64_t seq;
  double sent;
};

static void send_request(amqp_connection_state_t conn, struct slot *slots, uint64_t seq) {
  char correlation_id[24];
  amqp_basic_properties_t props;
  props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
                 AMQP_BASIC_CORRELATION_ID_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.reply_to = amqp_cstring_bytes(REPLY_TO);
  snprintf(correlation_id, sizeof correlation_id, "%llu", (unsigned long long)seq);
  props.correlation_id = amqp_cstring_bytes(correlation_id);
  struct slot *s = &slots[seq % (uint64_t)opt.inflight];
  s->seq = seq;
  s->sent = now();
  die_on_error(amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(rpc_queue), 0,
                                  0, &props, body),
               "rpc client: publishing request");
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile (p in 1..100) of a sorted, non-empty array. */
static double percentile(const double *sorted, size_t n, size_t p) {
  size_t rank = (p * n + 99) / 100;
  return sorted[rank > 0 ? rank - 1 : 0];
}

static void run_rpc(void) {
  snprintf(rpc_queue, sizeof rpc_queue, "bench.rpc.%d", (int)getpid());
  sem_init(&rpc_server_ready, 0, 0);
  pthread_t server;
  if (pthread_create(&server, NULL, rpc_server, NULL) != 0) die("starting server thread");
  sem_wait(&rpc_server_ready); /* the queue exists and is consumed from */

  /* The client: this thread and its own connection. */
  amqp_connection_state_t conn = open_connection();
  basic_consume(conn, REPLY_TO, 1);

  struct slot *slots = calloc((size_t)opt.inflight, sizeof *slots);
  size_t count = 0, capacity = 1 << 16;
  double *latencies = malloc(capacity * sizeof *latencies);
  if (slots == NULL || latencies == NULL) die("out of memory");

  struct timeval timeout = {0, 100 * 1000};
  double warm_end = now() + 1.0, end = warm_end + opt.seconds;
  uint64_t seq = 0;
  for (; seq < (uint64_t)opt.inflight; seq++) send_request(conn, slots, seq);
  for (;;) {
    amqp_envelope_t envelope;
    amqp_rpc_reply_t r = amqp_consume_message(conn, &envelope, &timeout, 0);
    if (is_timeout(r)) {
      if (now() >= end || interrupted) break;
      continue;
    }
    die_on_amqp_error(r, "rpc client: consuming replies");
    double t = now();
    amqp_basic_properties_t *reply = &envelope.message.properties;
    if (!(reply->_flags & AMQP_BASIC_CORRELATION_ID_FLAG))
      die("rpc client: reply without correlation_id");
    char correlation_id[24];
    snprintf(correlation_id, sizeof correlation_id, "%.*s", (int)reply->correlation_id.len,
             (char *)reply->correlation_id.bytes);
    uint64_t replied = strtoull(correlation_id, NULL, 10);
    struct slot *s = &slots[replied % (uint64_t)opt.inflight];
    if (s->seq != replied) die("rpc client: unexpected correlation_id %s", correlation_id);
    amqp_destroy_envelope(&envelope);
    amqp_maybe_release_buffers(conn);

    if (t >= end || interrupted) break;
    if (t >= warm_end) {
      if (count == capacity) {
        capacity *= 2;
        latencies = realloc(latencies, capacity * sizeof *latencies);
        if (latencies == NULL) die("out of memory");
      }
      latencies[count++] = (t - s->sent) * 1000.0;
    }
    send_request(conn, slots, seq++);
  }
  close_connection(conn);

  atomic_store(&rpc_stop, 1);
  pthread_join(server, NULL);

  if (interrupted) return;
  if (count == 0) die("rpc: no replies in the measured interval");
  qsort(latencies, count, sizeof *latencies, compare_doubles);
  printf("{\"case\":\"rpc\",\"queue_type\":\"%s\",\"inflight\":%ld,\"requests_per_sec\":%.1f,\"p50_ms\":%.3f,"
         "\"p99_ms\":%.3f,\"count\":%zu}\n",
         opt.quorum ? "quorum" : "classic", opt.inflight, count / opt.seconds, percentile(latencies, count, 50),
         percentile(latencies, count, 99), count);
  free(latencies);
  free(slots);
}

/* ---- main --------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: amqp-bench-c rpc|publish|consume [--url URL] [--inflight N] [--seconds S]\n"
          "                    [--messages M] [--window W] [--prefetch P] [--queue-type classic|quorum]\n");
  exit(2);
}

static long positive(const char *name, const char *value, long max) {
  char *end;
  long n = strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || n < 1 || n > max)
    die("%s must be an integer from 1 to %ld, got '%s'", name, max, value);
  return n;
}

static double seconds(const char *value) {
  char *end;
  double s = strtod(value, &end);
  if (*value == '\0' || *end != '\0' || !(s > 0 && s <= 86400))
    die("--seconds must be a number of seconds above 0, got '%s'", value);
  return s;
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  const char *which = argv[1];
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    const char *name = argv[i], *value = argv[i + 1];
    if (strcmp(name, "--url") == 0) opt.url = value;
    else if (strcmp(name, "--inflight") == 0) opt.inflight = positive(name, value, 32767);
    else if (strcmp(name, "--seconds") == 0) opt.seconds = seconds(value);
    else if (strcmp(name, "--messages") == 0) opt.messages = positive(name, value, 1L << 40);
    else if (strcmp(name, "--window") == 0) opt.window = positive(name, value, 1L << 30);
    else if (strcmp(name, "--prefetch") == 0) opt.prefetch = positive(name, value, 65535);
    else if (strcmp(name, "--queue-type") == 0 && strcmp(which, "rpc") == 0) {
      if (strcmp(value, "quorum") == 0) opt.quorum = 1;
      else if (strcmp(value, "classic") == 0) opt.quorum = 0;
      else die("--queue-type must be classic or quorum");
    } else usage();
  }
  memset(body_bytes, 'x', sizeof body_bytes);
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_signal;
  action.sa_flags = SA_RESTART; /* the loops see `interrupted` at their next step */
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);

  if (strcmp(which, "rpc") == 0) run_rpc();
  else if (strcmp(which, "publish") == 0) run_publish();
  else if (strcmp(which, "consume") == 0) run_consume();
  else usage();
  if (interrupted) {
    fprintf(stderr, "amqp-bench-c: interrupted; its queue is deleted\n");
    return 130;
  }
  return 0;
}
