#!/usr/bin/env bash
# Fresh RabbitMQ vhosts for the pytest-xdist workers of a test run (tests/xdist_env.py): `<base>-gw0`, `<base>-gw1`...
# (base `relay-test` for the default vhost `/`), each deleted first, so no task of an earlier run is left in its
# queues, and opened to the broker URL's user. Needs rabbitmqctl on the broker's machine (root, as CI is).
# Usage: scripts/rabbitmq_test_vhosts.sh BROKER_URL [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
url="$1"
workers="${2:-2}"
rabbitmqctl -q await_startup
# (rabbitmqctl reads standard input: the list is read whole first)
mapfile -t vhosts < <(python3 -m tests.xdist_env vhosts "$url" "$workers")
for line in "${vhosts[@]}"; do
    read -r vhost user <<<"$line"
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true  # absent on a fresh broker
    rabbitmqctl -q add_vhost "$vhost"
    rabbitmqctl -q set_permissions -p "$vhost" "$user" '.*' '.*' '.*'
done
