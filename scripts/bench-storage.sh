#!/usr/bin/env bash
# The storage backends' numbers, one run each: orders placed through the gateway per second
# (wrk, POST /orders, 201s only) and events read back from the event store per second
# (`warren replay --dry-run`, which pages through events.query, and `warren replay --to`, which
# also publishes each with confirms). The same system twice: every service on SQLite files,
# then every service on a PostgreSQL database of its own (DATABASE_URL). Each run has a vhost
# and databases of its own, removed afterwards.
#   BUILD=debug|release (debug)  DURATION=seconds of load (15)  CONNECTIONS=wrk connections (16)
#   REPLAY_EVENTS=the events each replay reads (4000: the same number on both backends)
#   PG_SYNCHRONOUS_COMMIT=off: the PostgreSQL run without waiting for the WAL flush at each commit
#   (what SQLite's synchronous=NORMAL in WAL mode does), to see what the flush costs.
#   Arguments: the backends to run (sqlite postgres by default).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-debug}"
DURATION="${DURATION:-15}"
CONNECTIONS="${CONNECTIONS:-16}"
REPLAY_EVENTS="${REPLAY_EVENTS:-4000}"
PG_USER="${PG_TEST_USER:-warren}" PG_PASSWORD="${PG_TEST_PASSWORD:-warren}"
bin=".build/$BUILD"

scripts/broker.sh >/dev/null
scripts/postgres.sh >/dev/null
for product in user-service order-service payment-service event-store api-gateway warren; do
    [ -x "$bin/$product" ] || { echo "build first: swift build -c $BUILD" >&2; exit 1; }
done
export PGPASSWORD="$PG_PASSWORD"
psql_() { psql -h 127.0.0.1 -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }

pids=() databases=() vhost="" data=""
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
    for database in "${databases[@]}"; do psql_ "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true; done
    databases=()
    [ -n "$vhost" ] && rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    [ -n "$data" ] && rm -rf "$data"
    vhost="" data=""
}
trap cleanup EXIT

wait_for() {  # url log
    for _ in $(seq 1 120); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.5
    done
    echo "$1 did not answer 200: $(curl -s "$1")" >&2
    tail -5 "$2" >&2
    return 1
}

run() {  # backend
    local backend=$1
    vhost="bench-$backend-$$"
    data="$(mktemp -d)"
    rabbitmqctl -q add_vhost "$vhost" >/dev/null
    rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
    export AMQP_URL="amqp://guest:guest@localhost:5672/$vhost" DATA_DIR="$data" LOG_LEVEL=warning LOG_FORMAT=json
    export JWT_SECRET="warren-DEVELOPMENT-ONLY-secret-do-not-use-in-production" RATE_LIMIT_PER_SECOND=0 BCRYPT_COST=4
    local port=18090
    for service in user-service:users order-service:orders payment-service:payments event-store:events; do
        port=$((port + 1))
        local url=""
        if [ "$backend" = postgres ]; then
            local database="warren_bench_${service##*:}_$$"
            psql_ "CREATE DATABASE $database ENCODING 'UTF8' TEMPLATE template0"
            databases+=("$database")
            [ -n "${PG_SYNCHRONOUS_COMMIT:-}" ] && psql_ "ALTER DATABASE $database SET synchronous_commit = ${PG_SYNCHRONOUS_COMMIT//[^a-z]/}"
            url="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/$database?sslmode=disable"
        fi
        DATABASE_URL="$url" HTTP_PORT=$port "$bin/${service%%:*}" >>"$data/${service%%:*}.log" 2>&1 &
        pids+=($!)
        wait_for "http://127.0.0.1:$port/health" "$data/${service%%:*}.log"
    done
    HTTP_PORT=18080 "$bin/api-gateway" >>"$data/api-gateway.log" 2>&1 &
    pids+=($!)
    wait_for http://127.0.0.1:18080/health "$data/api-gateway.log"

    curl -s -o /dev/null -X POST localhost:18080/users -H 'Content-Type: application/json' \
        -d '{"name":"Bench","email":"bench@example.com","password":"correct horse"}'
    TOKEN=$(curl -s -X POST localhost:18080/auth/token -H 'Content-Type: application/json' \
        -d '{"email":"bench@example.com","password":"correct horse"}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
    export TOKEN
    local report
    report=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/orders.lua http://127.0.0.1:18080/orders)
    local total non201 seconds
    total=$(echo "$report" | awk '/requests in/ {print $1}')
    non201=$(echo "$report" | awk '/Non-2xx/ {print $NF}')
    seconds=$(echo "$report" | awk '/requests in/ {gsub("s,","",$4); print $4}')
    local placed=$((total - ${non201:-0}))
    echo "$backend: orders through the gateway: $placed placed in ${seconds}s = $(echo "$placed / $seconds" | bc) orders/s (${non201:-0} not 201, $CONNECTIONS connections)"

    # Let the saga and the event store finish: each order is 3 events (created, payment, confirmed).
    local expected=$((placed * 3 + 1)) count=0
    for _ in $(seq 1 120); do
        count=$("$bin/warren" replay --dry-run --json --page-size 1000 2>/dev/null | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
        [ "${count:-0}" -ge "$expected" ] && break
        sleep 1
    done
    local start end
    start=$(date +%s.%N)
    count=$("$bin/warren" replay --dry-run --json --page-size 1000 --limit "$REPLAY_EVENTS" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
    end=$(date +%s.%N)
    echo "$backend: warren replay --dry-run: $count events in $(echo "$end - $start" | bc | cut -c1-5)s = $(echo "$count / ($end - $start)" | bc) events/s"
    curl -s -u guest:guest -X PUT "http://localhost:15672/api/queues/$vhost/benchsink.events" -H 'content-type: application/json' \
        -d '{"durable":false}' >/dev/null
    curl -s -u guest:guest -X POST "http://localhost:15672/api/bindings/$vhost/e/warren.events/q/benchsink.events" \
        -H 'content-type: application/json' -d '{"routing_key":"#"}' >/dev/null
    start=$(date +%s.%N)
    "$bin/warren" replay --to benchsink --page-size 1000 --limit "$REPLAY_EVENTS" >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$backend: warren replay --to benchsink: $count events in $(echo "$end - $start" | bc | cut -c1-5)s = $(echo "$count / ($end - $start)" | bc) events/s"
    cleanup
}

for backend in "${@:-sqlite postgres}"; do
    for one in $backend; do run "$one"; done
done
