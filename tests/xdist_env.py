"""Services of their own for each pytest-xdist worker (`make test` runs the suite in 2 processes with `-n 2`).

Loaded with `-p tests.xdist_env` (pyproject.toml's addopts), so it is imported before pytest-django loads the
settings: it must import nothing of Django or of the project. In a worker (PYTEST_XDIST_WORKER=gwN, which xdist
sets before the worker's configuration is made) it moves, before anything reads them:
- REDIS_URL (and a Redis CELERY_BROKER_URL) to database N + the given one: the channel layer's pub/sub channels
  (prefix `asgi-db{N}`) and groups (the ops group, zone groups), the throttle's cache and a Redis broker's queues
  are shared by everything on one database, per-test key prefixes or not;
- an AMQP CELERY_BROKER_URL and RELAY_FAULT_BROKER_URL to a virtual host of the worker's own (`<base>-gwN`, base
  `relay-test` for the default vhost `/`): Celery workers started by one test consume the `celery` and `webhooks`
  queues, and server subprocesses of every test publish there; a task of one worker's database must never run
  on the other's. `.ci/run` creates the vhosts (scripts/rabbitmq_test_vhosts.sh);
- PROMETHEUS_MULTIPROC_DIR to a subdirectory: metric tests sum the samples of every file in that directory.
The test database needs nothing here: pytest-django suffixes its name with the worker id (test_relay_gw0), and the
server subprocesses of tests/servers.py follow the connection's name.

`python -m tests.xdist_env vhosts BROKER_URL N` prints the N workers' vhosts and the broker's user, for the script."""

import os
import sys
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"... in a worker; empty in a plain run


def worker_index(worker: str) -> int:
    """gwN's slot: N, modulo the worker count, so a worker xdist starts in place of a crashed one (gw2 for gw0)
    takes over the dead one's Redis database and vhost instead of needing new ones."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    index = int(worker.removeprefix("gw"))
    return index % count if count else index


def redis_url_for(url: str, worker: str) -> str:
    """The Redis URL with its database number moved up by the worker's index (`redis://h/8` -> `.../9` for gw1)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = parse_qs(parts.query)
        query["db"] = [str(int(query.get("db", ["0"])[0]) + worker_index(worker))]
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query, doseq=True)}"  # urlunsplit drops the //
    db = int(parts.path.strip("/") or "0") + worker_index(worker)
    if db > 15:
        raise ValueError(f"xdist worker {worker} would use Redis database {db} of {url}: a redis-server has 0-15")
    return urlunsplit(parts._replace(path=f"/{db}"))


def amqp_vhost_for(url: str, worker: str) -> str:
    vhost = unquote(urlsplit(url).path[1:]) or "/"
    return f"{'relay-test' if vhost == '/' else vhost}-{worker}"


def amqp_url_for(url: str, worker: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(amqp_vhost_for(url, worker), safe="")))


def broker_url_for(url: str, worker: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme in {"amqp", "amqps", "pyamqp"}:
        return amqp_url_for(url, worker)
    if scheme in {"redis", "rediss", "unix"}:
        return redis_url_for(url, worker)
    return url  # memory://: in-process already


def isolate(environ, worker: str, *, make_dirs: bool = True) -> None:
    if environ.get("REDIS_URL"):
        environ["REDIS_URL"] = redis_url_for(environ["REDIS_URL"], worker)
    for name in ("CELERY_BROKER_URL", "RELAY_FAULT_BROKER_URL"):
        if environ.get(name):
            environ[name] = broker_url_for(environ[name], worker)
    if environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = os.path.join(environ["PROMETHEUS_MULTIPROC_DIR"], worker)
        if make_dirs:
            os.makedirs(metrics, exist_ok=True)
        environ["PROMETHEUS_MULTIPROC_DIR"] = metrics


if WORKER:
    isolate(os.environ, WORKER)


def _broker_refuses(url: str) -> str:
    """Why RabbitMQ refuses this URL (no such vhost, no permission); empty if it accepts it or is not there."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        cause = exc.__cause__ or exc
        return "" if isinstance(cause, OSError) else str(cause)  # down: the tests that need it say so
    return ""


def pytest_configure(config):
    """Checked once in the controller before the workers start: a worker that fails at startup is restarted, again
    and again, and a missing vhost would otherwise fail each Celery test of the worker in ways that do not say why."""
    import pytest  # here: `python -m tests.xdist_env` (scripts/rabbitmq_test_vhosts.sh) runs without the venv

    workers = config.getoption("numprocesses", None)
    if WORKER or not isinstance(workers, int) or workers < 1:
        return
    names = [f"gw{index}" for index in range(workers)]
    try:
        for worker in names:
            isolate(dict(os.environ), worker, make_dirs=False)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if urlsplit(broker).scheme in {"amqp", "amqps", "pyamqp"}:
        for worker in names:
            refused = _broker_refuses(amqp_url_for(broker, worker))
            if refused:
                raise pytest.UsageError(
                    f"RabbitMQ refuses vhost {amqp_vhost_for(broker, worker)!r} of xdist worker {worker} ({refused}): "
                    f"create the workers' vhosts with `scripts/rabbitmq_test_vhosts.sh URL {workers}` (.ci/run "
                    "does), or run in one process with TEST_WORKERS=0"
                )


if __name__ == "__main__" and sys.argv[1:2] == ["vhosts"]:
    url, count = sys.argv[2], int(sys.argv[3])
    user = unquote(urlsplit(url).username or "guest")
    for index in range(count):
        print(amqp_vhost_for(url, f"gw{index}"), user)
