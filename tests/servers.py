"""Real server processes for end-to-end tests: `manage.py serve` as a user runs it, on a free port."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from django.db import connection

from core.processes import stop_process
from tests.polling import eventually

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def wait_until_up(url: str, server: subprocess.Popen, deadline: float, log: Path | None = None) -> None:
    def answers() -> bool:
        assert server.poll() is None, "the server exited during startup\n" + (log.read_text()[-3000:] if log else "")
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if not eventually(answers, timeout_s=deadline - time.monotonic()):
        pytest.fail("the server did not answer in time")


def production_env(settings) -> dict:
    """Production mode on the test run's own database, Redis and key prefix, so the server sees the rows and the
    location index the test builds, and the test process's channel layer reaches the server's sockets."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        RELAY_REDIS_KEY_PREFIX=settings.RELAY_REDIS_KEY_PREFIX,
        DEBUG="0",
        SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        LOG_LEVEL="WARNING",
    )
    return env


@contextmanager
def running_server(env: dict, log: Path, *, deadline_s: float = 60, workers: int = 1):
    """A `manage.py serve` process; yields its base URL. Its output (tracebacks included) goes to `log`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = None
    try:
        with open(log, "wb") as out:
            server = subprocess.Popen(
                manage("serve", "--port", str(port), "--workers", str(workers)),
                env=env | {"RELAY_PUBLIC_URL": url}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until_up(url, server, time.monotonic() + deadline_s, log)
        yield url
    finally:
        stop_process(server)
