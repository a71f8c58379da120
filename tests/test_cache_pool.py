"""Django's cache (the API throttle's history) uses one Redis connection pool per process. Django builds a cache
object per context, and under ASGI each request has a context of its own: with the stock pool class every
request opened a new connection to Redis."""

import contextvars

import pytest
from django.core.cache import caches

from core.cache_pool import SharedConnectionPool

pytestmark = [pytest.mark.redis, pytest.mark.django_db]


def _pool_seen_by_a_new_request():
    def pool():
        cache = caches["default"]
        cache.get("anything")  # a throttle check, as a request makes one
        return cache._cache.get_client(write=True).connection_pool

    return contextvars.Context().run(pool)  # a fresh context, as each ASGI request gets


def test_requests_share_one_redis_connection_pool(monkeypatch):
    # A pool of this test's own: earlier tests of the process (threads of their own) may have opened more.
    monkeypatch.setattr(SharedConnectionPool, "_shared", {})
    first, second = _pool_seen_by_a_new_request(), _pool_seen_by_a_new_request()
    assert first is second
    assert len(first._connections) == 1  # connections this pool opened (a BlockingConnectionPool)
