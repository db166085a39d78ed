#!/usr/bin/env bash
# `make run`: the whole system in the foreground on one machine; Ctrl-C stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

started_broker=0
if ! (exec 3<>"/dev/tcp/127.0.0.1/${AMQP_PORT:-5672}") 2>/dev/null; then started_broker=1; fi
scripts/broker.sh

stop() {
    echo
    if [ "$started_broker" = 1 ]; then
        echo "==> stopping RabbitMQ (started by make run)"
        rabbitmqctl -q stop >/dev/null 2>&1 || true
    fi
    exit 0
}
trap stop INT TERM

echo "==> RabbitMQ is running at ${AMQP_URL:-amqp://guest:guest@localhost:5672/}"
echo "    The services and the gateway are not built yet; only the broker runs. Ctrl-C stops it."
while true; do sleep 3600 & wait $!; done
