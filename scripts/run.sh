#!/usr/bin/env bash
# `make run`: the whole system in the foreground on one machine; Ctrl-C stops what it started.
# Today that is the broker and the example service warren-echo; each service joins as it lands.
set -euo pipefail
cd "$(dirname "$0")/.."

started_broker=0
if ! (exec 3<>"/dev/tcp/127.0.0.1/${AMQP_PORT:-5672}") 2>/dev/null; then started_broker=1; fi
scripts/broker.sh

echo "==> building"
swift build --product warren-echo
swift build --product event-store

pids=()
stop() {
    trap - INT TERM
    echo
    echo "==> stopping"
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$started_broker" = 1 ]; then
        echo "==> stopping RabbitMQ (started by make run)"
        rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
    exit 0
}
trap stop INT TERM

export AMQP_URL="${AMQP_URL:-amqp://guest:guest@localhost:5672/}"
export LOG_FORMAT="${LOG_FORMAT:-text}"
.build/debug/warren-echo &
pids+=($!)
.build/debug/event-store &
pids+=($!)

echo "==> RabbitMQ at $AMQP_URL; warren-echo serves echo.rpc (health: http://localhost:8090/health)."
echo "    event-store records every event in data/events.sqlite and serves events.rpc (health: http://localhost:8094/health)."
echo "    Ctrl-C stops everything."
wait
