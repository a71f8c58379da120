"""Celery task durations and failures (SPEC 5 system metrics), from Celery's signals, in every worker."""

import os
import time

from celery import signals

from core import metrics

TASK_DURATION = metrics.histogram("relay_celery_task_duration_seconds", "Celery task run time, by task", ["task"])
TASK_FAILURES = metrics.counter("relay_celery_task_failures_total", "Celery tasks that raised, by task", ["task"])
_started: dict[str, float] = {}


@signals.task_prerun.connect(weak=False)
def _task_started(task_id=None, task=None, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect(weak=False)
def _task_finished(task_id=None, task=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_DURATION.labels(task=task.name).observe(time.perf_counter() - started)


@signals.task_failure.connect(weak=False)
def _task_failed(task_id=None, sender=None, **kwargs) -> None:
    TASK_FAILURES.labels(task=sender.name).inc()


@signals.worker_process_shutdown.connect(weak=False)
def _pool_process_ended(**kwargs) -> None:
    """A prefork pool's process ends with `os._exit`, which runs no exit handler: its samples are folded into the
    archive here instead (core.metrics), or its files stayed in the metric directory for good."""
    metrics.retire_process(os.getpid())
