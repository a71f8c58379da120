"""End to end: a real `manage.py serve` (embedded mode, its own SQLite file) driven by `manage.py simulate`
through the public API only, until a delivery is delivered. Runs everywhere, CI included: it needs no
service, whatever DATABASE_URL and REDIS_URL the rest of the suite uses."""

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from core.processes import stop_process
from tests.polling import eventually
from tests.servers import ROOT, free_port, manage, wait_until_up

pytestmark = pytest.mark.e2e

DEADLINE_S = 90  # headroom on a busy machine: the poll returns as soon as a delivery is delivered


def _embedded_env(database: Path, url: str) -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"REDIS_URL", "CELERY_BROKER_URL", "RELAY_LOCATION_REDIS_URL", "ALLOWED_HOSTS"}
    }
    env.update(DATABASE_URL=f"sqlite:///{database}", DEBUG="1", RELAY_PUBLIC_URL=url, LOG_LEVEL="WARNING")
    env.setdefault("SECRET_KEY", "e2e-only-not-a-secret")
    return env


def test_a_simulated_fleet_delivers_through_the_public_api(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _embedded_env(tmp_path / "e2e.sqlite3", url)
    subprocess.run(manage("migrate", "--noinput", "-v0"), env=env, check=True, cwd=ROOT)
    subprocess.run(
        manage("demo", "--setup-only", "--drivers", "4"), env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL
    )

    server_log, fleet_log = tmp_path / "server.log", tmp_path / "fleet.log"
    server = fleet = None
    delivered = 0
    try:
        with open(server_log, "wb") as out:
            server = subprocess.Popen(manage("serve", "--port", str(port)), env=env, cwd=ROOT, stdout=out, stderr=out)
        deadline = time.monotonic() + DEADLINE_S
        wait_until_up(url, server, deadline)
        with open(fleet_log, "wb") as out:
            fleet = subprocess.Popen(
                manage(
                    "simulate",
                    "--url", url,
                    "--drivers", "4",
                    "--rate", "30",
                    "--speedup", "100",
                    "--mix", "accept=0.9,decline=0.1",
                    "--seed", "1",
                    "--duration", str(DEADLINE_S),
                ),
                env=env, cwd=ROOT, stdout=out, stderr=out,
            )  # fmt: skip
        token = httpx.post(
            f"{url}/api/v1/auth/token", json={"username": "demo-merchant", "password": "demo-pass"}
        ).json()["token"]
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=5) as merchant:
            # Poll the end state with a deadline; the app's own clocks (offer expiry, sweeps) run untouched.
            delivered = eventually(
                lambda: merchant.get("/api/v1/deliveries", params={"status": "delivered"}).json()["count"],
                timeout_s=deadline - time.monotonic(),
                interval_s=0.5,
            )
            if delivered:
                one = merchant.get("/api/v1/deliveries", params={"status": "delivered"}).json()["results"][0]
                detail = merchant.get(f"/api/v1/deliveries/{one['id']}").json()
                steps = [event["to_state"] for event in detail["events"]]
                assert {"assigned", "picked_up", "delivered"} <= set(steps)
                # The link the merchant hands its customer (and the demo prints) works, in embedded mode too.
                page = httpx.get(detail["tracking_url"])
                assert page.status_code == 200 and 'id="tracking-state"' in page.text
                tracked = httpx.get(detail["tracking_url"].replace("/t/", "/api/v1/track/")).json()
                assert (tracked["status"], "location" in tracked) == ("delivered", False)
    finally:
        stop_process(fleet)
        stop_process(server)
    fleet_output, server_output = fleet_log.read_text(), server_log.read_text()
    assert delivered, f"nothing delivered in {DEADLINE_S} s\n{fleet_output[-3000:]}\n{server_output[-3000:]}"
    assert fleet.returncode == 0 and "Traceback" not in fleet_output, fleet_output[-3000:]
    assert server.returncode == 0 and "Traceback" not in server_output, server_output[-3000:]


def _server_on(port: int) -> int:
    """The pid of the `manage.py serve --port PORT` process (the demo's server, in a session of its own)."""
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in command and str(port).encode() in command:
            return int(entry.name)
    raise AssertionError(f"no server on port {port}")


def test_the_demo_stops_and_says_so_when_its_server_dies(tmp_path):
    """A server that died left `make demo` printing "?" and a growing error count, as if the system still ran."""
    port = free_port()
    env = _embedded_env(tmp_path / "demo.sqlite3", f"http://127.0.0.1:{port}")
    subprocess.run(manage("migrate", "--noinput", "-v0"), env=env, check=True, cwd=ROOT)
    output = tmp_path / "demo.out"
    command = manage("demo", "--port", str(port), "--drivers", "2", "--status-every", "0.5")
    with open(output, "wb") as out:
        log = ["--log", str(tmp_path / "demo.log")]
        demo = subprocess.Popen([*command, *log], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert eventually(lambda: b"pending" in output.read_bytes(), timeout_s=DEADLINE_S, interval_s=0.3)
        os.kill(_server_on(port), signal.SIGKILL)
        assert demo.wait(timeout=30) != 0
    finally:
        stop_process(demo)
    assert f"the server stopped (-9); see {tmp_path / 'demo.log'}" in output.read_text()
