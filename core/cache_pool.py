"""One Redis connection pool per process for Django's cache (the API throttle's history lives there).

Django keeps a cache object per context (asgiref `Local`), and under ASGI every request runs in a context of its
own: the stock RedisCache then builds a new client, a new connection pool and so a new TCP connection to Redis
for every request (the benchmark's profile showed ~6 % of the server's samples in `connect`). The pool
class below hands every cache object of the process the same pool for the same URL and options; redis-py pools
are thread-safe and reset themselves in a forked child. It waits for a free connection rather than raising
`Too many connections` when every request thread wants one at once."""

import threading

import redis


class SharedConnectionPool(redis.BlockingConnectionPool):
    """Shared per URL and options; past its 100 connections a caller waits for one (the stock pool raises)."""

    _shared: dict[tuple, redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> redis.ConnectionPool:
        key = (url, tuple(sorted((name, repr(value)) for name, value in kwargs.items())))
        with cls._lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = super().from_url(url, **kwargs)
            return pool
