#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, beside (never instead of) the main broker on 5672:
#   scripts/cluster.sh start            starts warren-c1..3@localhost and joins c2 and c3 to c1
#   scripts/cluster.sh stop             stops every node and removes the cluster's directory
#   scripts/cluster.sh stop-node N [--drain]  stops node N (1..3), keeping its data: it rejoins on
#                                       start; --drain first puts it in maintenance mode
#                                       (`rabbitmq-upgrade drain`: its quorum queue leaders move to
#                                       the other nodes, its clients are disconnected), as for a
#                                       planned stop
#   scripts/cluster.sh start-node N     starts node N again, waits until it runs, ends maintenance mode
#   scripts/cluster.sh url              prints the AMQP_URL that lists the three nodes
#   scripts/cluster.sh ctl N ARGS…      rabbitmqctl against node N (e.g. ctl 1 list_connections)
# Settings: CLUSTER_DIR (default /tmp/warren-cluster: data, logs, the Erlang cookie),
# CLUSTER_PORT (default 5681: AMQP on 5681-5683, Erlang distribution on 25681-25683).
# Management is off (the nodes start faster); rabbitmqctl answers what a test needs.
# Idempotent: `start` on a running cluster only checks it; `stop` on none does nothing.
set -euo pipefail

CLUSTER_DIR="${CLUSTER_DIR:-/tmp/warren-cluster}"
CLUSTER_PORT="${CLUSTER_PORT:-5681}"
NODES=(1 2 3)
# The scripts of the package itself: Debian's wrappers in /usr/sbin switch to the rabbitmq
# user, whose environment (and Erlang cookie) is not ours.
RABBIT_BIN="${RABBIT_BIN:-/usr/lib/rabbitmq/bin}"

node_name() { echo "warren-c$1@localhost"; }
amqp_port() { echo $((CLUSTER_PORT + $1 - 1)); }
dist_port() { echo $((CLUSTER_PORT + 20000 + $1 - 1)); }

# One node's environment: its own name, ports, data, logs and configuration; the cluster's
# cookie through HOME.
node_env() {
    local n="$1" dir="$CLUSTER_DIR/c$1"
    export HOME="$CLUSTER_DIR"
    export RABBITMQ_NODENAME="$(node_name "$n")"
    export RABBITMQ_NODE_PORT="$(amqp_port "$n")"
    export RABBITMQ_DIST_PORT="$(dist_port "$n")"
    export RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    export RABBITMQ_CONFIG_FILES="$dir/conf.d"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_SERVER_START_ARGS="${RABBITMQ_SERVER_START_ARGS:-}"
}

ctl() {
    local n="$1"
    shift
    (node_env "$n" && "$RABBIT_BIN/rabbitmqctl" -n "$(node_name "$n")" "$@")
}

upgrade() {
    local n="$1"
    shift
    (node_env "$n" && "$RABBIT_BIN/rabbitmq-upgrade" -n "$(node_name "$n")" "$@")
}

answering() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

prepare() {
    mkdir -p "$CLUSTER_DIR"
    if [ ! -f "$CLUSTER_DIR/.erlang.cookie" ]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$CLUSTER_DIR/.erlang.cookie"
        chmod 400 "$CLUSTER_DIR/.erlang.cookie"
    fi
    for n in "${NODES[@]}"; do
        local dir="$CLUSTER_DIR/c$n"
        mkdir -p "$dir/mnesia" "$dir/log" "$dir/conf.d"
        : >"$dir/rabbitmq-env.conf"
        echo '[].' >"$dir/enabled_plugins"
        cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = $(amqp_port "$n")
loopback_users = none
classic_queue.default_version = 2
EOF
    done
}

start_node() {
    local n="$1"
    if answering "$(amqp_port "$n")"; then return 0; fi
    # The node outlives this script: it must hold none of its caller's descriptors (a test
    # runner waits for the end of a pipe that a detached node would keep open for ever).
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
        done
        node_env "$n" && exec "$RABBIT_BIN/rabbitmq-server" -detached </dev/null >"$CLUSTER_DIR/c$n/log/start.out" 2>&1
    ) || true
}

# As root `rabbitmq-server -detached` returns before the node runs: wait for it.
await_node() {
    local n="$1"
    for _ in $(seq 1 120); do
        if ctl "$n" -q await_startup --timeout 5 >/dev/null 2>&1 && answering "$(amqp_port "$n")"; then return 0; fi
        sleep 1
    done
    echo "node $(node_name "$n") did not start within 120 s; see $CLUSTER_DIR/c$n/log/" >&2
    return 1
}

joined() { ctl 1 -q cluster_status --formatter json 2>/dev/null | grep -q "\"$(node_name "$1")\""; }

start() {
    command -v "$RABBIT_BIN/rabbitmq-server" >/dev/null || { echo "RabbitMQ is not installed (scripts/broker.sh installs it)" >&2; exit 1; }
    prepare
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do await_node "$n"; done
    for n in 2 3; do
        if ! ctl 1 -q cluster_status 2>/dev/null | grep -q "$(node_name "$n")"; then
            local log="$CLUSTER_DIR/c$n/log/join.out"
            { ctl "$n" -q stop_app && ctl "$n" -q reset && ctl "$n" -q join_cluster "$(node_name 1)" && ctl "$n" -q start_app; } >"$log" 2>&1 ||
                { cat "$log" >&2; echo "node $(node_name "$n") could not join $(node_name 1)" >&2; exit 1; }
            await_node "$n"
        fi
    done
    echo "==> RabbitMQ cluster up: $(url)"
}

stop_node() {
    local n="$1" pid=""
    if [ "${2:-}" = "--drain" ]; then upgrade "$n" -q drain >/dev/null 2>&1 || true; fi
    [ -f "$CLUSTER_DIR/c$n/rabbitmq.pid" ] && pid="$(cat "$CLUSTER_DIR/c$n/rabbitmq.pid" 2>/dev/null || true)"
    ctl "$n" -q stop >/dev/null 2>&1 || true
    # A node that did not stop (or half started) is ended by its own pid, never by name.
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

stop() {
    [ -d "$CLUSTER_DIR" ] || return 0
    for n in "${NODES[@]}"; do stop_node "$n"; done
    rm -rf "$CLUSTER_DIR"
}

url() {
    local hosts=()
    for n in "${NODES[@]}"; do hosts+=("localhost:$(amqp_port "$n")"); done
    (IFS=,; echo "amqp://guest:guest@${hosts[*]}/")
}

case "${1:-}" in
start) start ;;
stop) stop ;;
stop-node) stop_node "${2:?node number}" "${3:-}" ;;
start-node) start_node "${2:?node number}"; await_node "$2"; upgrade "$2" -q revive >/dev/null 2>&1 || true ;;
url) url ;;
ctl) shift; n="${1:?node number}"; shift; ctl "$n" "$@" ;;
*) echo "usage: $0 start|stop|stop-node N|start-node N|url|ctl N ARGS…" >&2; exit 2 ;;
esac
