"""While Redis is down (found by the production soak), the periodic work that touches it says so in one line and
carries on: no task fails with a traceback every few seconds (flush breadcrumbs, refresh ETAs, socket credential
rechecks), a push that cannot reach the channel layer is one warning, not a stack trace per message, and requests
let through unthrottled are said every few seconds, not once each."""

import logging

import pytest
import redis

from core import metrics
from core.tasks import recheck_socket_credentials
from core.throttling import THROTTLE_FAILURES
from deliveries.tasks import flush_breadcrumbs, refresh_etas
from drivers import locations
from drivers.notifications import push_to_group
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


class _DownLayer:
    async def group_send(self, *args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")


@pytest.fixture
def redis_down(settings, monkeypatch):
    settings.RELAY_LOCATION_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    locations.reset_redis()
    monkeypatch.setattr("core.ws.get_channel_layer", lambda: _DownLayer())
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: _DownLayer())
    yield
    locations.reset_redis()


def _tracebacks(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


def test_periodic_work_on_redis_says_so_in_one_line_while_it_is_down(redis_down, caplog):
    with caplog.at_level(logging.WARNING):
        assert flush_breadcrumbs() == 0
        assert refresh_etas() == 0
        recheck_socket_credentials()
    assert _tracebacks(caplog) == []
    assert any("breadcrumbs not flushed" in record.getMessage() for record in caplog.records)
    assert any("not rechecked" in record.getMessage() for record in caplog.records)


def test_a_push_the_channel_layer_cannot_take_is_one_line(redis_down, caplog):
    with caplog.at_level(logging.WARNING):
        push_to_group("driver.someone", {"type": "offer.created", "seq": 1})
    assert _tracebacks(caplog) == []
    assert [record.getMessage() for record in caplog.records] == [
        "push to driver.someone failed (Error 111 connecting to 127.0.0.1:6390. Connection refused.); "
        "the client will resume"
    ]


def test_requests_let_through_while_the_throttle_cache_is_down_are_said_once_not_each(
    zones, settings, monkeypatch, caplog
):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    monkeypatch.setattr("core.throttling._client", None)  # built again on the cache above
    before = metrics.value(THROTTLE_FAILURES)
    client = api_client_for(factories.DriverFactory().user)
    with caplog.at_level(logging.WARNING, logger="core.throttling"):
        statuses = {client.get("/api/v1/driver/me").status_code for _ in range(20)}
    assert statuses == {200}  # fail open
    assert metrics.value(THROTTLE_FAILURES) == before + 20
    warnings = [record.getMessage() for record in caplog.records if record.name == "core.throttling"]
    assert len(warnings) == 1, warnings
