#!/usr/bin/env bash
# Installs (when missing) and starts (when not answering) the PostgreSQL server the storage and
# service tests run against, with no systemd: Debian's `postgresql`, its cluster started with
# pg_ctlcluster (created with pg_createcluster if there is none), and a login role for the tests
# (PG_TEST_USER/PG_TEST_PASSWORD, default warren/warren, allowed to create databases: each test
# creates its own and drops it). Idempotent; safe to run before every build.
set -euo pipefail

PG_PORT="${PG_PORT:-5432}"
PG_TEST_USER="${PG_TEST_USER:-warren}"
PG_TEST_PASSWORD="${PG_TEST_PASSWORD:-warren}"

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

if ! dpkg -s postgresql >/dev/null 2>&1; then
    echo "==> installing postgresql"
    $sudo_cmd apt-get update -qq
    # Debian's package tries to start the server through the init system; there may be none.
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql >/dev/null
fi

answering() { (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; }

if ! answering; then
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$version/main"; then
        echo "==> creating PostgreSQL cluster $version/main on port $PG_PORT"
        $sudo_cmd pg_createcluster --port "$PG_PORT" "$version" main >/dev/null
    fi
    echo "==> starting PostgreSQL cluster $version/main"
    $sudo_cmd pg_ctlcluster "$version" main start
    for _ in $(seq 1 30); do
        answering && break
        sleep 1
    done
    answering || { echo "PostgreSQL did not answer on port $PG_PORT within 30 s" >&2; exit 1; }
fi

# The tests' role: created once, its password (re)set each time so that a role left with
# another password does not fail the run. Identifiers and the password are plain words here.
as_postgres() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }
if [ "$(as_postgres "psql -p $PG_PORT -tAc \"SELECT 1 FROM pg_roles WHERE rolname = '$PG_TEST_USER'\"")" != "1" ]; then
    echo "==> creating PostgreSQL role $PG_TEST_USER (CREATEDB) for the tests"
    as_postgres "psql -p $PG_PORT -qc \"CREATE ROLE $PG_TEST_USER LOGIN CREATEDB PASSWORD '$PG_TEST_PASSWORD'\""
else
    as_postgres "psql -p $PG_PORT -qc \"ALTER ROLE $PG_TEST_USER LOGIN CREATEDB PASSWORD '$PG_TEST_PASSWORD'\""
fi
echo "==> PostgreSQL answers on port $PG_PORT (tests log in as $PG_TEST_USER)"
