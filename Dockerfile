# One image holds every Warren executable; docker-compose.yml runs each as its own service.
# Build stage: the Swift toolchain plus the C libraries Warren links (librabbitmq, SQLite).
FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends librabbitmq-dev libsqlite3-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change does not fetch them again.
COPY Package.swift ./
COPY Tests Tests
RUN swift package resolve
COPY Sources Sources
RUN swift build -c release --static-swift-stdlib \
    && mkdir /out \
    && for product in user-service order-service payment-service event-store warren-echo api-gateway warren; do \
         if [ -x ".build/release/$product" ]; then cp ".build/release/$product" /out/; fi; \
       done

# Run stage: only the shared libraries the binaries need, and curl for the health checks.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends librabbitmq4 libsqlite3-0 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /app warren \
    && mkdir -p /app /data && chown warren /data
COPY --from=build /out/ /usr/local/bin/
COPY schemas /app/schemas
WORKDIR /app
USER 10001
ENV DATA_DIR=/data LOG_FORMAT=json
