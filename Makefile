# Warren: `make run` starts the system, `make test` runs every test against a real broker.
SWIFT ?= swift
BENCH_C := .build/amqp-bench-c
STAND_IN := .build/users-responder

.PHONY: run test build broker postgres bench bench-events bench-storage clean

run:
	@scripts/run.sh

# A test that hangs fails the run after 20 minutes instead of holding CI. Rounds, so that
# timing-sensitive tests never share the machine with a crowd of processes: the libraries' tests
# in parallel; then the tests that run the services as real processes, one at a time (each
# starts several processes, and stand-in services live in the test process); then those that measure a deadline to the millisecond, on a quiet machine; and last the
# load tests (100,000 persistent messages, a publish flood, bulk replays), one at a time; then the
# cluster test, which starts a three-node RabbitMQ cluster of its own (scripts/cluster.sh, ports
# 5681-5683 and 25681-25683) and removes it, even when it fails (a run killed before that is
# cleaned up by the next).
# First, the contracts in the ecosystem's validators (scripts/check-contracts.sh: OpenAPI 3.1 and
# AsyncAPI 3.0; idempotent, installs what is missing from PyPI).
# Last, what an operator runs: docker-compose.yml, deploy/kubernetes and the Prometheus/Grafana
# configuration checked offline against the code, and Prometheus scraping the services run here
# (scripts/check-deploy.sh; idempotent, installs what is missing, leaves nothing running).
SYSTEM_TESTS := ServiceTests|EventStoreTests|CLITests|GatewayTests
CLUSTER_TESTS := ClusterFailoverTests
# (and the declare latency under publish bursts, a median measured to the tenth of a second, and
# the RPC client's deadlines without a timer, each bounded above by about a second)
TIMED_TESTS := RPCTests/deadline|RPCClientDeadlineTests|declaresBetweenPublishBursts
BULK_TESTS := manyConfirmedMessages|floodDoesNotStarveConsumer|ReplayThroughputTests|requeueInterrupted|HostileFloodTests
test: broker postgres
	scripts/check-contracts.sh
	$(SWIFT) build --build-tests
	timeout --kill-after=30 900 $(SWIFT) test --skip-build --skip '$(SYSTEM_TESTS)|$(TIMED_TESTS)|$(BULK_TESTS)|$(CLUSTER_TESTS)'
	timeout --kill-after=30 1200 $(SWIFT) test --skip-build --no-parallel --filter '$(SYSTEM_TESTS)' --skip '$(BULK_TESTS)|$(CLUSTER_TESTS)'
	timeout --kill-after=30 300 $(SWIFT) test --skip-build --filter '$(TIMED_TESTS)'
	timeout --kill-after=30 600 $(SWIFT) test --skip-build --no-parallel --filter '$(BULK_TESTS)'
	timeout --kill-after=30 900 $(SWIFT) test --skip-build --no-parallel --filter '$(CLUSTER_TESTS)'
	timeout --kill-after=30 600 scripts/check-deploy.sh

build:
	$(SWIFT) build

broker:
	@scripts/broker.sh

# PostgreSQL for the storage and service suites' second backend (installs and starts it if
# needed, creates the tests' role; idempotent). Each test creates a database and drops it.
postgres:
	@scripts/postgres.sh

bench:
	@scripts/broker.sh --bench
	$(SWIFT) build -c release --product warren-bench
	$(SWIFT) build -c release --product api-gateway
	$(SWIFT) build -c release --product user-service
	@mkdir -p .build
	cc -O2 -Wall -o $(BENCH_C) bench/amqp_bench.c -lrabbitmq -lpthread
	cc -O2 -Wall -o $(STAND_IN) bench/users_responder.c -lrabbitmq
	.build/release/warren-bench amqp --json --c-program $(BENCH_C)
	.build/release/warren-bench gateway --json --c-program $(BENCH_C) --stand-in $(STAND_IN)

# The event store's numbers (README, The event store): appends at 0 and at 1 million events
# through the broker, and 100,000 events paged through events.query, by the release build.
bench-events: broker
	$(SWIFT) build -c release --product event-store
	$(SWIFT) build --build-tests
	WARREN_BENCH=1 EVENT_STORE_BUILD=release $(SWIFT) test --skip-build --filter EventStoreBenchmark

# SQLite against PostgreSQL: orders through the gateway per second and `warren replay` events
# per second, one run each (scripts/bench-storage.sh; BUILD=release for the release build).
bench-storage: broker postgres
	$(SWIFT) build
	@scripts/bench-storage.sh

clean:
	$(SWIFT) package clean
	rm -f $(BENCH_C) $(STAND_IN)
