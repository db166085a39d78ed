#!/bin/sh
# One database per Warren service (each service its own store; none reads another's), created
# by the postgres image on the first start of an empty volume. The event store has its own too.
set -eu
for database in users orders payments events; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE $database OWNER \"$POSTGRES_USER\""
done
