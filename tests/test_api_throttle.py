"""The API's per-user limit (API_THROTTLE_RATE, DRF's sliding window) as a client meets it, on Redis: requests
that arrive together are each counted, a throttled answer says how long to wait, and the window slides."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.db import connection

from core import throttling
from core.throttling import UserThrottle
from tests.conftest import api_client_for

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

LIMIT = 5


@pytest.fixture
def merchant_client(merchant, monkeypatch, settings):
    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", {"user": f"{LIMIT}/min"})
    log = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    key = throttling.log_key(f"throttle_user_{merchant.user.pk}")  # user ids repeat in each new test database
    log.delete(key)
    yield api_client_for(merchant.user)
    log.delete(key)


def test_requests_arriving_together_are_each_counted(merchant, merchant_client):
    together = threading.Barrier(20)

    def list_deliveries(_):
        client = api_client_for(merchant.user)
        together.wait()
        try:
            return client.get("/api/v1/deliveries").status_code
        finally:
            connection.close()  # this thread's own

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(list_deliveries, range(20)))
    assert sorted(statuses) == [200] * LIMIT + [429] * (20 - LIMIT)


def test_a_throttled_client_is_told_when_to_come_back_and_the_window_slides(merchant_client, clock):
    for _ in range(LIMIT):  # at 0, 1, 2, 3 and 4 s
        assert merchant_client.get("/api/v1/deliveries").status_code == 200
        clock.shift(1)
    clock.shift(15)
    refused = merchant_client.get("/api/v1/deliveries")  # at 20 s
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert refused["Retry-After"] == "40"  # the first of the five leaves the window 60 s after it came
    clock.shift(39)
    assert merchant_client.get("/api/v1/deliveries").status_code == 429  # at 59 s
    clock.shift(1)
    assert merchant_client.get("/api/v1/deliveries").status_code == 200  # at 60 s: the first has left
    assert merchant_client.get("/api/v1/deliveries").status_code == 429  # the other four are still in it
