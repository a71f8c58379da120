"""Parts of a production deployment that a fault test may break: a PRIVATE redis-server on its own port (never the
shared one), Celery worker and beat processes on RabbitMQ, and the beat schedules at a fault test's pace."""

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tests.polling import eventually
from tests.servers import ROOT, free_port

RABBITMQ = os.environ.get("RELAY_FAULT_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
SWEEP_S = 1  # every sweep's interval in fault tests: "within two sweep intervals" is then two seconds


class PrivateRedis:
    """A redis-server of the test's own, on a free port; `stop()` and `start()` it at will."""

    def __init__(self, workdir: Path):
        if not shutil.which("redis-server"):
            pytest.fail("fault tests need redis-server (Debian's redis-server package)")
        self.port, self.workdir, self.process = free_port(), workdir, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        assert eventually(lambda: _pings(client), timeout_s=10), "private redis-server did not start"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.exceptions.ConnectionError:
        return False


@contextmanager
def private_redis(workdir: Path):
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def broker_reachable() -> bool:
    from kombu import Connection

    try:
        with Connection(RABBITMQ, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
        return True
    except Exception:
        return False


def fast_sweeps() -> None:
    """Every beat schedule every SWEEP_S seconds (the data migrations' rows may have been flushed by earlier
    transactional tests, so they are written here again)."""
    from deliveries.tasks import (
        dispatch_waiting_deliveries,
        expire_overdue_offers,
        flush_driver_positions,
        run_escalation_ladder,
    )

    every, _ = IntervalSchedule.objects.get_or_create(every=SWEEP_S, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.all().delete()
    for task in (expire_overdue_offers, dispatch_waiting_deliveries, run_escalation_ladder, flush_driver_positions):
        PeriodicTask.objects.create(name=f"fault test: {task.name}", task=task.name, interval=every)


def celery(env: dict, log: Path, *args: str) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("celery")), "-A", "config", *args, "-l", "warning"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@contextmanager
def worker_and_beat(env: dict, log: Path):
    """One worker (both queues, prefork with one child, as production runs it) and one beat."""
    worker = celery(env, log, "worker", "-Q", "celery,webhooks", "-c", "1", "--without-mingle", "--without-gossip")
    beat = celery(env, log, "beat", "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                  "--max-interval", str(SWEEP_S))  # fmt: skip
    try:
        yield worker, beat
    finally:
        stop(beat, worker)


def stop(*processes: subprocess.Popen) -> None:
    """Stop Celery processes as a supervisor should: SIGTERM to each main process only, Celery's warm shutdown (a
    prefork child finishes the task it runs; the whole group signalled kills it mid-task, a WorkerLostError),
    then SIGKILL to whatever of the group is left after 20 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(probe, *, timeout_s: float, what: str):
    started = time.monotonic()
    result = eventually(probe, timeout_s=timeout_s)
    assert result, f"{what}: not within {timeout_s} s"
    return result, time.monotonic() - started
