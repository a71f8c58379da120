"""Queueing Celery tasks after commit without letting a broker outage fail the committed change.

Every task queued this way has a beat sweep behind it (expiry, dispatch, webhooks), so a task that could
not be queued is late, not lost; each such failure is logged and counted. Any error is caught, not only an
outage: the change is committed when the callback runs, and an exception escaping it would answer the request
as failed (a client's retry would then find its delivery made, and get 200 instead of the 201 it was owed).
"""

import logging

from django.db import transaction
from kombu.exceptions import OperationalError

from core import metrics

log = logging.getLogger(__name__)
ENQUEUE_FAILURES = metrics.counter(
    "relay_task_enqueue_failures_total",
    "Tasks that could not be queued (broker down or misconfigured); their sweep picks the work up",
)


def enqueue_on_commit(task, *args, eta=None) -> None:
    def send():
        try:
            task.apply_async(args, eta=eta)
        except (OperationalError, ConnectionError, OSError) as exc:
            ENQUEUE_FAILURES.inc()
            log.warning("could not queue %s%s (%s); its sweep will pick it up", task.name, args, exc)
        except Exception:  # a misconfigured broker (a missing vhost, refused credentials): same outcome, louder
            ENQUEUE_FAILURES.inc()
            log.exception("could not queue %s%s; its sweep will pick it up", task.name, args)

    transaction.on_commit(send)
