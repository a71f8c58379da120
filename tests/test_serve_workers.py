"""`serve --workers N`: N worker processes under a supervisor that loads no Django (memory is per worker)."""

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from tests import factories, faults
from tests.servers import production_env, running_server
from tests.test_metrics import samples


def _rss_kb(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_two_workers_serve_pings_under_a_supervisor_without_django(zones, settings, tmp_path):
    driver = factories.online_driver(*factories.CENTRO)
    token, _ = Token.objects.get_or_create(user=driver.user)
    point = {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": datetime.now(UTC).isoformat()}
    with running_server(production_env(settings), tmp_path / "server.log", workers=2, deadline_s=180) as url:
        for _ in range(4):  # new connections: both workers answer in turn
            answer = httpx.post(
                f"{url}/api/v1/driver/locations",
                json={"points": [point]},
                headers={"Authorization": f"Token {token.key}"},
            )
            assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "dropped": 0})
        # Websockets without permessage-deflate here too (the client offers it): no compressor pair per socket.
        with connect(f"{url.replace('http', 'ws', 1)}/ws/driver/?token={token.key}") as driver_socket:
            assert driver_socket.protocol.extensions == []
        port = int(url.rsplit(":", 1)[1])
        supervisor = _listening_supervisor(port)
        workers = [pid for pid in _children(supervisor) if b"spawn_main" in _cmdline(pid)]
        assert len(workers) >= 2
        # A worker holds Django, DRF, Channels and the apps; the supervisor none of them.
        assert _rss_kb(supervisor) < min(_rss_kb(pid) for pid in workers) / 2
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _listening_supervisor(port: int) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"core.supervisor" in args and str(port).encode() in args:
            return int(cmdline.parent.name)
    raise AssertionError("no uvicorn supervisor for this port")


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_that_dies_is_replaced_with_a_warning_naming_it(zones, settings, tmp_path):
    """uvicorn replaces a dead or hung worker, and says so at info: below the warning level Relay serves at, so a
    worker dropping every socket it held left no line in the log."""
    driver = factories.online_driver(*factories.CENTRO)
    token, _ = Token.objects.get_or_create(user=driver.user)
    log = tmp_path / "server.log"
    with running_server(production_env(settings), log, workers=2, deadline_s=180) as url:
        supervisor = _listening_supervisor(int(url.rsplit(":", 1)[1]))
        workers = [pid for pid in _children(supervisor) if b"spawn_main" in _cmdline(pid)]
        os.kill(workers[0], signal.SIGKILL)

        def replaced() -> bool:
            return len([pid for pid in _children(supervisor) if b"spawn_main" in _cmdline(pid)]) == len(workers)

        # The supervisor writes the warning once its round of health checks is over: each live process may take
        # up to HEALTHCHECK_TIMEOUT_S (30 s) to answer on a loaded machine, as the replacement may to start.
        faults.wait_for(replaced, timeout_s=60, what="the replacement worker")
        faults.wait_for(
            lambda: f"server process [{workers[0]}] ended" in log.read_text(), timeout_s=60, what="the warning"
        )
        answer = httpx.get(f"{url}/api/v1/driver/me", headers={"Authorization": f"Token {token.key}"}, timeout=30)
        assert answer.status_code == 200
    warning = next(line for line in log.read_text().splitlines() if f"[{workers[0]}] ended" in line)
    assert warning.startswith("WARNING:")
    assert "exit code -9" in warning and "replaced by [" in warning


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_killed_workers_sockets_leave_the_socket_count(zones, settings, tmp_path):
    """A worker killed (or crashed) runs no exit handler: the sockets it held were counted in every scrape of
    `relay_websocket_connections` for as long as the host's metric directory was kept, and its files stayed there,
    as did those of every worker stopped, weeks of restarts adding up."""
    driver = factories.online_driver(*factories.CENTRO)
    token, _ = Token.objects.get_or_create(user=driver.user)
    metrics_dir, scrape_token = tmp_path / "metrics", "scrape-secret-0123456789"
    metrics_dir.mkdir()
    env = production_env(settings) | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "METRICS_TOKEN": scrape_token}
    log = tmp_path / "server.log"

    def drivers_connected(url: str) -> float:
        scrape = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {scrape_token}"}, timeout=30)
        return samples(scrape.text).get(("relay_websocket_connections", (("kind", "driver"),)), 0)

    with running_server(env, log, workers=2, deadline_s=180) as url:
        with connect(f"{url.replace('http', 'ws', 1)}/ws/driver/?token={token.key}"):
            assert drivers_connected(url) == 1
            (holder,) = [int(path.stem.rsplit("_", 1)[1]) for path in metrics_dir.glob("gauge_livesum_*.db")]
            os.kill(holder, signal.SIGKILL)
            faults.wait_for(
                lambda: f"server process [{holder}] ended" in log.read_text(), timeout_s=60, what="replaced"
            )
        assert drivers_connected(url) == 0
    # Stopped, the workers left no file either (they die of the SIGTERM that uvicorn raises again once done).
    assert sorted(path.name for path in metrics_dir.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
