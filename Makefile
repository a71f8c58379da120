# Every target bootstraps the virtualenv first; re-running is cheap (a stamp file tracks pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo run test lint bench migrate clean lock fault-drill

# requirements.lock pins every package to the version CI runs (installed as constraints: pyproject.toml says what
# is needed, the lock which version). Production installs the same: pip install -c requirements.lock .
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

# After changing dependencies in pyproject.toml: resolve them afresh in a scratch virtualenv and pin the result.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev]'
	.lock-venv/bin/python -m pip freeze --exclude-editable > requirements.lock
	rm -rf .lock-venv

# The long fault runs (minutes): Redis down 2 minutes, 20 worker kills, 100 rounds of killed DB connections,
# 500 race rounds. Needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (each run starts its own private Redis).
fault-drill: $(STAMP)
	SECRET_KEY=$${SECRET_KEY:-tests-only-not-a-secret-0123456789abcdef0123456789abcdef} SECURE_SSL_REDIRECT=0 \
	bash scripts/fault_drill.sh

migrate: $(STAMP)
	$(BIN)/python manage.py migrate --noinput

# The first run also seeds two weeks of history (through the real actions) so the KPI dashboard has data.
demo: migrate
	rm -rf var/metrics  # metric samples of processes from an earlier run (see PROMETHEUS_MULTIPROC_DIR)
	$(BIN)/python manage.py demo --setup-only
	$(BIN)/python manage.py seed_history --days 14 --if-empty
	$(BIN)/python manage.py demo $(DEMO_ARGS)

run: migrate
	rm -rf var/metrics
	$(BIN)/python manage.py serve

# Tests run with production settings when REDIS_URL is set; they need a secret and plain-http test clients, and
# a fresh directory for the metric samples of this run's processes.
# TEST_WORKERS pytest-xdist processes share the tests (TEST_WORKERS=0: one process, as before; `-n 0` in
# PYTEST_ARGS does the same). Each worker has its own test database, Redis database and RabbitMQ vhost
# (tests/xdist_env.py; an AMQP broker needs the vhosts of scripts/rabbitmq_test_vhosts.sh). loadgroup: tests are
# handed out one by one as workers free up, except those of one xdist_group, which stay together.
TEST_WORKERS ?= 2
test: $(STAMP)
	SECRET_KEY=$${SECRET_KEY:-tests-only-not-a-secret-0123456789abcdef0123456789} SECURE_SSL_REDIRECT=0 \
	PROMETHEUS_MULTIPROC_DIR=$$(mktemp -d -t relay-metrics-XXXXXX) \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The bench runs the server as production installs it (pip install -c requirements.lock .), in a virtualenv of
# its own without the test tools: libraries import some of those merely because they are there (cryptography
# through channels-redis, requests through DRF), ~15 MB per server process that production does not have.
# BENCH_BASE_PYTHON: the interpreter it is made from, production's. Its build moves every CPU figure: Debian's
# python3.11 (libpython linked into the executable) took 12-14 % less CPU per create + dispatch + accept than pyenv's
# default build (libpython shared, no --enable-optimizations) here (BENCHMARKS.md, round 21). To switch, remove
# .venv-bench first.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_BASE_PYTHON ?= $(PYTHON)

$(BENCH_STAMP): pyproject.toml requirements.lock
	test -x $(BENCH_VENV)/bin/python || $(BENCH_BASE_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -c requirements.lock '.[bench]'
	touch $(BENCH_STAMP)

# Needs PostgreSQL and Redis on 127.0.0.1 (database relay_bench and Redis db 5 are the bench's own: both are
# wiped). BENCH_ARGS="--quick" for a short check run; py-spy (extra `bench`) for `--profile PHASE`.
# REST ingest load comes from Debian's wrk (compiled, so it takes little of the server's CPU); only the bench
# needs it, so only the bench installs it.
bench: $(BENCH_STAMP)
	command -v wrk >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(BENCH_VENV)/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) db.sqlite3*
