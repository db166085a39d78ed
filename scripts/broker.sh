#!/usr/bin/env bash
# Installs (when missing) and starts (when not answering) what Warren needs on one machine:
# RabbitMQ and librabbitmq (socat and openssl for the TLS tests, check-jsonschema for the
# contract tests). Idempotent; safe to run before every build.
set -euo pipefail

AMQP_PORT="${AMQP_PORT:-5672}"
packages=(rabbitmq-server librabbitmq-dev socat openssl)
[ "${1:-}" = "--bench" ] && packages+=(wrk)

missing=()
for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    # Debian's package tries to start the broker through the init system; there may be none.
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The contract tests validate emitted messages against schemas/ with check-jsonschema, and
# `make test` validates schemas/openapi.yaml with openapi-spec-validator (both PyPI).
if [ "${1:-}" != "--bench" ]; then
    for tool in check-jsonschema openapi-spec-validator; do
        command -v "$tool" >/dev/null 2>&1 && continue
        echo "==> installing $tool"
        python3 -m pip install --quiet --root-user-action=ignore "$tool"
    done
fi

# Broker settings (scripts/rabbitmq.conf) go where RabbitMQ reads them at start. A broker
# already running keeps its settings until it restarts.
config_source="$(dirname "$0")/rabbitmq.conf"
config_target=/etc/rabbitmq/conf.d/10-warren.conf
if ! cmp -s "$config_source" "$config_target" 2>/dev/null; then
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd mkdir -p "$(dirname "$config_target")"
    $sudo_cmd cp "$config_source" "$config_target"
    echo "==> wrote $config_target (a running broker applies it at its next start)"
fi

answering() { (exec 3<>"/dev/tcp/127.0.0.1/${1:-$AMQP_PORT}") 2>/dev/null; }

# `warren dlq list` and `warren topology` list queues through the management API (AMQP
# cannot); Prometheus scrapes queue depths and consumers from rabbitmq_prometheus (port 15692,
# per-object metrics: rabbitmq.conf). Enabling plugins is idempotent and works on a running node.
MANAGEMENT_PORT="${MANAGEMENT_PORT:-15672}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-15692}"
plugins=(rabbitmq_management rabbitmq_prometheus)
management() {
    answering "$MANAGEMENT_PORT" && answering "$PROMETHEUS_PORT" && return 0
    echo "==> enabling the RabbitMQ management and Prometheus plugins"
    rabbitmq-plugins enable "${plugins[@]}" >/dev/null
    for _ in $(seq 1 30); do
        answering "$MANAGEMENT_PORT" && answering "$PROMETHEUS_PORT" && return 0
        sleep 1
    done
    echo "the management API (port $MANAGEMENT_PORT) or the Prometheus endpoint (port $PROMETHEUS_PORT) did not answer within 30 s" >&2
    return 1
}

if answering; then
    management
    exit 0
fi
echo "==> starting RabbitMQ"
# Enabled before the start: rabbitmq.conf sets prometheus.* keys, which a node without the
# plugin refuses as unknown.
rabbitmq-plugins enable --offline "${plugins[@]}" >/dev/null
rabbitmq-server -detached >/dev/null 2>&1 || true
for _ in $(seq 1 90); do
    if rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && answering; then
        echo "==> RabbitMQ is up on port $AMQP_PORT"
        management
        exit 0
    fi
    sleep 1
done
echo "RabbitMQ did not start within 90 s; see /var/log/rabbitmq/" >&2
exit 1
