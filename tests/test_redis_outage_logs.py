"""While Redis is down (found by the production soak), the periodic work that touches it says so in one line and
carries on: no task fails with a traceback every few seconds (flush breadcrumbs, refresh ETAs, socket credential
rechecks), and a push that cannot reach the channel layer is one warning, not a stack trace per message."""

import logging

import pytest
import redis

from core.tasks import recheck_socket_credentials
from deliveries.tasks import flush_breadcrumbs, refresh_etas
from drivers import locations
from drivers.notifications import push_to_group

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
