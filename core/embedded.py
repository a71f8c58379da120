"""Celery inside the serving process for the embedded mode (no Redis): a solo worker and beat in threads,
on the in-memory broker (see GOTCHAS.md for why exactly these options).

They run Celery's current app, the one `config/celery.py` creates when Django loads `config`: core stays below
config and never imports it."""

import logging
import threading

from celery.app import app_or_default
from celery.beat import EmbeddedService

log = logging.getLogger(__name__)


class EmbeddedCelery:
    def __init__(self) -> None:
        self.worker = None
        self.beat = None

    def start(self, *, beat: bool = True) -> None:
        self.worker = app_or_default().Worker(
            pool="solo",
            concurrency=1,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="embedded@localhost",
            loglevel="WARNING",
            redirect_stdouts=False,
        )
        threading.Thread(target=self.worker.start, name="celery-worker", daemon=True).start()
        if beat:
            self.beat = embedded_beat()
            self.beat.start()
        log.info("embedded Celery worker%s started", " and beat" if beat else "")

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        if self.worker is not None:
            try:
                self.worker.stop(in_sighandler=False)
            except Exception:  # stopping a half-started worker at exit must not mask the real exit
                log.debug("embedded worker stop", exc_info=True)


def embedded_beat():
    """Beat in a thread, on the configured scheduler: `EmbeddedService` would otherwise use Celery's default
    file-based scheduler, whose schedule is empty here, and no sweep (offer expiry, dispatch retries, the
    escalation ladder, stale drivers) would ever run."""
    app = app_or_default()
    return EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
