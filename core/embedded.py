"""Celery inside the serving process for the embedded mode (no Redis): solo workers and beat in threads, on the
in-memory broker (see GOTCHAS.md for why exactly these options).

Two workers, as production runs them: one for the default queue (offer expiry, dispatch, sweeps) and one for
webhooks, so a merchant's slow server never holds up an offer's expiry. A worker's queue selection is kept on
its Celery app, so the webhook worker gets an app of its own (same configuration and tasks).

They run Celery's current app, the one `config/celery.py` creates when Django loads `config`: core stays below
config and never imports it."""

import logging
import threading

from celery import Celery
from celery.app import app_or_default
from celery.beat import EmbeddedService
from celery.worker import state as worker_state
from django.conf import settings

log = logging.getLogger(__name__)


def _webhook_app() -> Celery:
    webhook_app = Celery("relay-webhooks", set_as_current=False)
    webhook_app.config_from_object("django.conf:settings", namespace="CELERY")
    webhook_app.autodiscover_tasks()
    return webhook_app


def _worker(celery_app: Celery, *, queue: str, hostname: str):
    return celery_app.Worker(
        pool="solo",
        concurrency=1,
        queues=[queue],
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        # kombu's event loop (the Hub) is one per process: two workers in one process take turns polling
        # instead (with the memory broker they do anyway; with Redis, as in the tests, they would collide).
        use_eventloop=False,
        hostname=hostname,
        loglevel="WARNING",
        redirect_stdouts=False,
    )


class EmbeddedCelery:
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.beat = None

    def start(self, *, beat: bool = True) -> None:
        app = app_or_default()
        workers = [
            _worker(app, queue=settings.CELERY_TASK_DEFAULT_QUEUE, hostname="embedded@localhost"),
            _worker(_webhook_app(), queue=settings.WEBHOOK_QUEUE, hostname="embedded-webhooks@localhost"),
        ]
        # Building a worker makes its app the process's current one: without this, every task sent from here on
        # would go through the webhook worker's app (and its configuration) instead of Relay's.
        app.set_current()
        app.set_default()
        # Building a worker also points Celery's fast task tracer at that worker's app, through one registry per
        # process: the default worker would run its tasks through the webhook app's registry, whose tracers only
        # exist once the webhook worker has started, and a task it took first killed it ("'NoneType' object is
        # not callable"). The plain tracer looks each task up in the current app, Relay's.
        for celery_app in {worker.app for worker in workers}:
            celery_app.use_fast_trace_task = False
        worker_state.should_stop = None
        self.threads = [
            threading.Thread(target=worker.start, name=f"celery-{worker.hostname}", daemon=True) for worker in workers
        ]
        for thread in self.threads:
            thread.start()
        if beat:
            self.beat = embedded_beat()
            self.beat.start()
        log.info("embedded Celery workers%s started", " and beat" if beat else "")

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        # Each worker leaves its loop at its next turn (within 2 s) and shuts down in its own thread: closing
        # its broker connection from this thread could block on a read the worker's thread is in.
        worker_state.should_stop = 0
        for thread in self.threads:
            thread.join(timeout=15)
        worker_state.should_stop = None


def embedded_beat():
    """Beat in a thread, on the configured scheduler: `EmbeddedService` would otherwise use Celery's default
    file-based scheduler, whose schedule is empty here, and no sweep (offer expiry, dispatch retries, the
    escalation ladder, stale drivers) would ever run."""
    app = app_or_default()
    return EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
