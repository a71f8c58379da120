"""System metrics in Prometheus format at /metrics, summed over every server and Celery worker process.

prometheus_client runs in multiprocess mode (settings point PROMETHEUS_MULTIPROC_DIR at a directory every
process of the deployment shares): each process writes its samples to its own files and a scrape adds them up.
Figures that are facts of the database (unassigned deliveries, open escalations) or of a service (Redis up)
are read at scrape time instead, by collectors the apps register, so they are counted once, not per process.
"""

import atexit
import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import Metric

LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_scrape_collectors: list[Callable[[], Iterable[Metric]]] = []


def counter(name: str, help_text: str, labels: Iterable[str] = ()) -> Counter:
    return Counter(name, help_text, list(labels))


def histogram(name: str, help_text: str, labels: Iterable[str] = (), buckets=DURATION_BUCKETS) -> Histogram:
    return Histogram(name, help_text, list(labels), buckets=buckets)


def live_gauge(name: str, help_text: str, labels: Iterable[str] = ()) -> Gauge:
    """A gauge summed over the processes alive now (a dead process's share is dropped at its exit)."""
    return Gauge(name, help_text, list(labels), multiprocess_mode="livesum")


def value(metric, **labels) -> float:
    """This process's own value of a counter or gauge (tests compare before and after)."""
    return (metric.labels(**labels) if labels else metric)._value.get()


def register_scrape_collector(collect: Callable[[], Iterable[Metric]]) -> None:
    """`collect()` yields metrics computed at each scrape (once, in the process answering it)."""
    if collect not in _scrape_collectors:
        _scrape_collectors.append(collect)


class _ScrapeTime:
    def collect(self):
        for collect in _scrape_collectors:
            yield from collect()


def render_prometheus() -> bytes:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(_ScrapeTime())
    return generate_latest(registry)


@atexit.register
def _process_exited() -> None:
    multiprocess.mark_process_dead(os.getpid())
