#!/usr/bin/env bash
# `make test`'s check of what an operator runs (issues 14 and 15): installs what is missing
# (Debian's docker-compose and prometheus, PyPI's kubernetes-validate, which bundles the
# Kubernetes schemas so nothing needs a cluster or the network afterwards), then
#   scripts/check_deploy.py      docker-compose.yml (`docker-compose config -q`), deploy/kubernetes
#                                (kustomize build, kubernetes-validate, probes on the served ports),
#                                deploy/prometheus (promtool) and the Grafana dashboard, against the code;
#   scripts/check_prometheus.py  Prometheus with the repository's scrape configuration against the
#                                services running here: every target up, every dashboard metric there.
# Idempotent: a second run installs nothing; each run leaves no process, vhost or folder behind.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
missing=()
for package in docker-compose prometheus; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    $sudo_cmd apt-get update -qq
    # Debian's prometheus package would start a daemon through the init system; there may be none.
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
    python3 -m pip install --quiet --root-user-action=ignore pyyaml
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate"
    python3 -m pip install --quiet --root-user-action=ignore kubernetes-validate
fi
# kubectl (for `kubectl kustomize`) is optional: without it each manifest is validated on its own.

python3 scripts/check_deploy.py
python3 scripts/check_prometheus.py
