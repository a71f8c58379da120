#!/usr/bin/env bash
# The long fault runs behind issue 13, with the numbers the issue asks for (CI runs the same tests shorter).
# Prints what each run observed. Needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1; DATABASE_URL and REDIS_URL
# as for `make test` (each fault test starts its own private redis-server and never stops the shared services).
set -euo pipefail
cd "$(dirname "$0")/.."
export RELAY_REQUIRE_SERVICES=1
export RELAY_FAULT_BROKER_URL="${RELAY_FAULT_BROKER_URL:-${CELERY_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672//}}"

run() { echo "== $1"; shift; env "$@"; }

run "Redis down for 2 minutes under a production Relay" RELAY_OUTAGE_S=150 \
    .venv/bin/python -m pytest tests/test_faults.py -k redis_down -q -s -p no:cacheprovider
for n in $(seq 1 20); do
    run "worker SIGKILLed mid-task, $n/20" \
        .venv/bin/python -m pytest tests/test_faults.py -k killed_mid -q -s -p no:cacheprovider
done
run "database connections killed, 100 rounds" RELAY_DB_KILL_ROUNDS=100 \
    .venv/bin/python -m pytest tests/test_faults.py -k killed_database -q -s -p no:cacheprovider
run "races: 500 rounds, 500 concurrent accepts" RELAY_RACE_ROUNDS=500 RELAY_RACE_ACCEPTS=500 \
    .venv/bin/python -m pytest tests/test_races.py -q -p no:cacheprovider
run "3,000 refused socket connects leak no Redis connection" RELAY_REFUSED_SOCKETS=3000 \
    .venv/bin/python -m pytest tests/test_socket_refusals.py -q -p no:cacheprovider
run "state machine: 300 examples of 80 steps" RELAY_STATEFUL_EXAMPLES=300 RELAY_STATEFUL_STEPS=80 \
    .venv/bin/python -m pytest tests/test_state_machine.py -q -p no:cacheprovider
