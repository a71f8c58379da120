"""The real server (`manage.py serve`, embedded mode, its own SQLite file), as a newcomer or an attacker meets
it: the login limit holds whatever X-Forwarded-For says, the API docs come from the server itself, clients
asking it for the schema at once all get it, and more requests than it has request threads, arriving together,
are all answered."""

import asyncio
import re
import subprocess
import time

import httpx
import pytest

from core.processes import stop_process
from tests.servers import ROOT, free_port, manage, wait_until_up
from tests.test_demo_e2e import _embedded_env

# One server for the module: its tests stay on one xdist worker (`--dist loadgroup`), not a server on each.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("served")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A low login limit: each login checks a password with the real hasher (slow on a busy machine), and the
    # limit's window is one minute.
    # Two request threads: more requests than threads arrive together below.
    env = _embedded_env(folder / "served.sqlite3", url) | {"LOGIN_THROTTLE_RATE": "5/min", "RELAY_REQUEST_THREADS": "2"}
    subprocess.run(manage("migrate", "--noinput", "-v0"), env=env, check=True, cwd=ROOT)
    log = folder / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(manage("serve", "--port", str(port)), env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        wait_until_up(url, process, time.monotonic() + 60)
        yield url
    finally:
        stop_process(process)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_forty_logins_with_forty_forwarded_for_values_are_throttled(server):
    statuses = []
    with httpx.Client(base_url=server, timeout=30) as client:
        for n in range(40):
            response = client.post(
                "/api/v1/auth/token",
                json={"username": f"nobody-{n}", "password": "wrong"},
                headers={"X-Forwarded-For": f"10.7.{n}.1"},
            )
            statuses.append(response.status_code)
        assert response.json()["code"] == "throttled"
    assert statuses[:5] == [401] * 5
    assert set(statuses[5:]) == {429}


def test_the_api_docs_are_served_by_relay_itself(server):
    with httpx.Client(base_url=server, timeout=30) as client:
        for path in ("/api/docs/", "/api/redoc/"):
            page = client.get(path)
            assert page.status_code == 200
            assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert assets and all(url.startswith("/") for url in assets), assets
            for url in assets:
                asset = client.get(url)  # a file answer: streamed, not built in memory
                assert asset.status_code == 200, url
                assert asset.content and len(asset.content) == int(asset.headers["Content-Length"]), url


def test_clients_asking_a_fresh_server_for_the_schema_at_once_all_get_it(server):
    async def many():
        async with httpx.AsyncClient(base_url=server, timeout=60) as client:
            return await asyncio.gather(*(client.get("/api/schema/?format=json") for _ in range(6)))

    answers = asyncio.run(many())
    assert [answer.status_code for answer in answers] == [200] * 6
    assert all(answer.json()["paths"] == answers[0].json()["paths"] for answer in answers)


def test_requests_arriving_together_are_all_answered(server):
    async def many():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(*(client.get(f"/api/v1/nothing-here-{n}") for n in range(30)))

    answers = asyncio.run(many())
    assert [answer.status_code for answer in answers] == [404] * 30
    assert {answer.json()["code"] for answer in answers} == {"not_found"}
