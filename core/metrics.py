"""System metrics in Prometheus format at /metrics, summed over every server and Celery worker process.

prometheus_client runs in multiprocess mode (settings point PROMETHEUS_MULTIPROC_DIR at a directory every
process of the deployment shares): each process writes its samples to its own files and a scrape adds them up;
a process that ends folds its counts into one archive file there (`retire_process`).
Figures that are facts of the database (unassigned deliveries, open escalations) or of a service (Redis up)
are read at scrape time instead, by collectors the apps register, so they are counted once, not per process.
"""

import atexit
import contextlib
import fcntl
import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import Metric
from prometheus_client.mmap_dict import MmapedDict

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
    with _directory_locked(fcntl.LOCK_SH):
        return generate_latest(registry)


# The kinds of sample that are summed over every process, the ended ones included (a total must never go back).
SUMMED_KINDS = ("counter", "histogram")


@contextlib.contextmanager
def _directory_locked(mode: int):
    """The metric directory's lock: scrapes share it, `retire_process` takes it alone. Opened for reading, which is
    all a lock needs: a lock file made by another user (a `manage.py migrate` run as root) must not fail scrapes."""
    path = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "archive.lock")
    lock = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, mode)
        yield
    finally:
        os.close(lock)  # and the lock with it


def retire_process(pid: int) -> None:
    """Fold an ended process's samples into the directory's archive: its live gauges are dropped, its counters and
    histograms added to one archive file per kind, and its own files deleted. prometheus_client keeps a pair of files
    per process that ever started (each server and Celery worker process, beat, every `manage.py` command: each
    imports the metrics), and every scrape read them all: the directory and each scrape's cost grew with every
    restart and deploy for as long as the directory was kept. Done while no scrape reads, so none counts a process
    twice or misses it."""
    multiprocess.mark_process_dead(pid)
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    with _directory_locked(fcntl.LOCK_EX):
        for kind in SUMMED_KINDS:
            ended = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(ended):
                continue
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(ended):
                    archived, _ = archive.read_value(key)
                    archive.write_value(key, archived + value, timestamp)
            finally:
                archive.close()
            os.remove(ended)


@atexit.register
def _process_exited() -> None:
    # The directory cleared meanwhile (nothing is left to fold), or its archive another user's (the files stay, and
    # are counted, as prometheus_client leaves them).
    with contextlib.suppress(OSError):
        retire_process(os.getpid())
