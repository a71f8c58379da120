import io
import os
import shutil
import uuid
from pathlib import Path

import pytest
import redis
import time_machine
from django.core.management import call_command
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from deliveries import eta
from deliveries.tasks import send_unsent_webhooks
from drivers import locations, trail
from tests import factories
from zones.selectors import zone_cache

DEMO_ZONES = Path(__file__).parent / "data" / "demo_zones.geojson"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_SERVICES = os.environ.get("RELAY_REQUIRE_SERVICES") == "1"
# Every test run gets its own Redis key space, so runs (and developers) sharing one Redis never meet.
RUN_PREFIX = f"relay-test-{uuid.uuid4().hex[:8]}:"


# Under pytest-xdist (`make test` runs 2 workers, handed tests one at a time) the longest files go first, longest
# first (a CI run's figures: the schema fuzz ~70 s, the e2e demo, the dashboard, the races, the faults...), so the
# short tests fill in at the end and the workers finish together, not one idling while the other runs a 70-second
# test it drew last. Only the order changes, within pytest-django's groups (tests that rely on the data migrations'
# rows still run before transactional tests flush them); a run in one process keeps pytest's order.
LONGEST_FIRST = [
    "test_schema_fuzz.py",
    "test_demo_e2e.py",
    "test_browser_dashboard.py",
    "test_races.py",
    "test_faults.py",
    "test_production_sockets.py",
    "test_state_machine.py",
    "test_socket_refusals.py",
    "test_seed_history.py",
    "test_tracking_socket.py",
    "test_access_matrix.py",
]


@pytest.hookimpl(tryfirst=True)  # before pytest-django's, which then keeps its groups (transactional tests last)
def pytest_collection_modifyitems(items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker sorts alike: xdist needs the same order in each
        rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def _unavailable(why: str):
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {why}")
    pytest.skip(why)


@pytest.fixture(autouse=True)
def _services(request, settings):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _unavailable("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if request.node.get_closest_marker("redis"):
        if not settings.REDIS_URL:
            _unavailable("needs Redis: set REDIS_URL=redis://...")
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1).ping()
        except redis.exceptions.ConnectionError as exc:
            _unavailable(f"Redis at REDIS_URL is not reachable: {exc}")
    if request.node.get_closest_marker("browser") and not os.path.exists(CHROMIUM):
        _unavailable("needs Debian's chromium: apt-get install chromium")


@pytest.fixture(autouse=True)
def _isolated(settings):
    """Fresh in-process caches, a private Redis key prefix and no throttle history for each test."""
    settings.RELAY_REDIS_KEY_PREFIX = RUN_PREFIX + uuid.uuid4().hex[:8] + ":"
    _forget_throttles(settings)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.RELAY_WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the tests' webhook receivers run on 127.0.0.1
    zone_cache.clear()
    eta.forget_learned()
    locations.reset_redis()
    trail.reset_memory()
    yield
    if settings.RELAY_LOCATION_REDIS_URL:
        try:
            client = redis.Redis.from_url(settings.RELAY_LOCATION_REDIS_URL, socket_connect_timeout=1)
            keys = list(client.scan_iter(settings.RELAY_REDIS_KEY_PREFIX + "*"))
            if keys:
                client.delete(*keys)
        except redis.exceptions.ConnectionError:
            pass
    locations.reset_redis()
    zone_cache.clear()


def _forget_throttles(settings) -> None:
    """Delete the throttles' request logs from the cache's Redis, where the test's own servers keep them too. They
    are keyed by client address and username, which tests share (every live server's client is 127.0.0.1) and
    which the factories give again in each run: the logins of one test (the schema fuzz posts many), or of a run
    a minute before, counted against the next one's, which was refused its logins (429)."""
    cache = settings.CACHES["default"]
    if not cache["BACKEND"].endswith("RedisCache"):
        return  # a local-memory cache lives and dies with the test process
    try:
        client = redis.Redis.from_url(cache["LOCATION"], socket_connect_timeout=1)
        keys = list(client.scan_iter("*throttle_*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.exceptions.ConnectionError:
        pass  # the tests that need Redis say so themselves


@pytest.fixture(autouse=True)
def _eager_celery():
    from config.celery import app

    app.conf.task_always_eager = True
    yield


@pytest.fixture
def zones(db):
    call_command("load_zones", str(DEMO_ZONES), stdout=io.StringIO())
    from zones.models import Zone

    return {zone.code: zone for zone in Zone.objects.all()}


@pytest.fixture
def clock():
    """A controllable clock: frozen at a fixed instant; `clock.shift(seconds)` moves it."""
    with time_machine.travel("2026-11-25 12:00:00+00:00", tick=False) as traveller:
        yield traveller


def sweep_webhooks_every_minute(clock, *, minutes: int, after_each=None) -> None:
    """The webhook sweep as beat runs it: once at each of the next `minutes` minutes of the clock, then
    `after_each(minute)`, where the first minute is 1."""
    for minute in range(1, minutes + 1):
        clock.shift(60)
        send_unsent_webhooks()
        if after_each is not None:
            after_each(minute)


def api_client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def count_round_trips(monkeypatch) -> list:
    """From now on, one item in the returned list for each shared round trip to Redis (`core.round_trip`) that
    the async location client of the running event loop sends."""
    shared = locations.async_client().relay_round_trip
    round_trips = []
    exchange = shared.exchange

    async def counted(commands):
        round_trips.append(commands)
        return await exchange(commands)

    monkeypatch.setattr(shared, "exchange", counted)
    return round_trips


@pytest.fixture
def merchant(zones):
    return factories.MerchantFactory()


@pytest.fixture
def merchant_api(merchant):
    return api_client_for(merchant.user)


@pytest.fixture
def ops_user(db):
    return factories.OpsUserFactory()


@pytest.fixture
def ops_api(ops_user):
    return api_client_for(ops_user)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Async tests run ORM calls in executor threads whose connections outlive the test; PostgreSQL will not
    drop the test database while they are open, so end them before teardown."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture
def receivers():
    """Webhook receivers on 127.0.0.1 (tests/receivers.py), closed after the test: `receivers(status=500)`."""
    from tests.receivers import Receiver

    opened: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        opened.append(Receiver(**kwargs))
        return opened[-1]

    yield make
    for receiver in opened:
        receiver.close()
