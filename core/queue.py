"""Queueing Celery tasks after commit without letting a broker outage fail the committed change.

Every task queued this way has a beat sweep behind it (expiry, dispatch, webhooks), so a task that could
not be queued is late, not lost; each such failure is logged and counted.
"""

import logging

from django.db import transaction
from kombu.exceptions import OperationalError

from core import metrics

log = logging.getLogger(__name__)
ENQUEUE_FAILURES = metrics.counter(
    "relay_task_enqueue_failures_total", "Tasks that could not be queued (broker down); their sweep picks the work up"
)


def enqueue_on_commit(task, *args, eta=None) -> None:
    def send():
        try:
            task.apply_async(args, eta=eta)
        except (OperationalError, ConnectionError, OSError) as exc:
            ENQUEUE_FAILURES.inc()
            log.warning("could not queue %s%s (%s); its sweep will pick it up", task.name, args, exc)

    transaction.on_commit(send)
