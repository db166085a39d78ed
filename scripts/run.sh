#!/usr/bin/env bash
# `make run`: the whole system in the foreground on one machine; Ctrl-C stops what it started.
# The broker, then every service (each with its database under data/), then the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."

started_broker=0
if ! (exec 3<>"/dev/tcp/127.0.0.1/${AMQP_PORT:-5672}") 2>/dev/null; then started_broker=1; fi
scripts/broker.sh

# name:port of /health. Each is its own process, as it would be in production.
services=(user-service:8091 order-service:8092 payment-service:8093 event-store:8094 warren-echo:8090 api-gateway:8080)

echo "==> building"
swift build

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
export DATA_DIR="${DATA_DIR:-data}"
# DEVELOPMENT ONLY: the gateway signs tokens with this marked secret (it refuses it when
# WARREN_ENV=production). Set JWT_SECRET to a random value anywhere else.
export JWT_SECRET="${JWT_SECRET:-warren-DEVELOPMENT-ONLY-secret-do-not-use-in-production}"
for service in "${services[@]}"; do
    .build/debug/"${service%%:*}" &
    pids+=($!)
done

echo "==> RabbitMQ at $AMQP_URL; databases in $DATA_DIR/"
for service in "${services[@]}"; do echo "    ${service%%:*}: http://localhost:${service##*:}/health"; done
echo "    Registering never makes an admin; to make one, register the account, then:"
echo "      DATA_DIR=$DATA_DIR .build/debug/user-service grant-admin <email>"
echo "    Ctrl-C stops everything."
wait
