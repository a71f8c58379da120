"""Rate limits that fail open: throttling state lives in the cache (Redis in production), and a Redis outage
must not turn every API call into an error while dispatch itself carries on without Redis.

Every limit is DRF's sliding log (SimpleRateThrottle: the times of the requests of the last `duration` seconds,
at most `num_requests` of them). On Redis the log is a list, checked and written by one command that Redis runs
atomically (SLIDING_LOG): one round trip per request instead of DRF's read and then write of a pickled list, and
two requests of one client at the same moment can no longer both read the same history and lose one of their
times. The location ingest route (drivers/ingest.py) runs the same command on the same key, so pings and the
rest of the API share one budget. Embedded mode (no Redis) keeps DRF's own code on the local-memory cache."""

import logging
import math
import time

from django.core.cache import cache as django_cache
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from core import metrics

log = logging.getLogger(__name__)
THROTTLE_FAILURES = metrics.counter(
    "relay_throttle_cache_failures_total", "Requests let through unthrottled because the throttle cache failed"
)

# KEYS: the log (a list, newest first). ARGV: now, duration, num_requests. Returns {1, count} when the request
# is recorded, {0, count, oldest time} when it is throttled (what DRF's wait() needs). EVAL sends the text each
# time; Redis compiles it once and keeps it.
SLIDING_LOG = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local oldest = redis.call('LINDEX', KEYS[1], -1)
while oldest and tonumber(oldest) <= now - window do
  redis.call('RPOP', KEYS[1])
  oldest = redis.call('LINDEX', KEYS[1], -1)
end
local count = redis.call('LLEN', KEYS[1])
if count >= limit then
  return {0, count, oldest}
end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], window)
return {1, count + 1}
"""


def log_key(cache_key: str) -> str:
    """The Redis key of a throttle's log (a list: not the key of DRF's pickled history, which it replaces)."""
    return django_cache.make_key(f"{cache_key}:log")


def check(target, cache_key: str, now: float, duration: int, num_requests: int):
    """SLIDING_LOG on a redis-py client, sync or async (its answer), or on a pipeline (queued)."""
    return target.eval(SLIDING_LOG, 1, log_key(cache_key), repr(now), duration, num_requests)


# While the cache is down every request fails open: said once per this many seconds, with how many were let
# through, not once per request (thousands of lines a second in production; relay_throttle_cache_failures_total
# counts them all).
WARN_EVERY_S = 10.0
_unwarned = {"failures": 0, "since": float("-inf")}


def _warn_failure(exc: Exception) -> None:
    THROTTLE_FAILURES.inc()
    _unwarned["failures"] += 1
    now = time.monotonic()
    if now - _unwarned["since"] < WARN_EVERY_S:
        return
    let_through, _unwarned["failures"], _unwarned["since"] = _unwarned["failures"], 0, now
    log.warning("throttle cache unavailable (%s); %d request(s) let through unthrottled", exc, let_through)


_client = None


def _redis():
    """One client per process on the cache's own connection pool (core/cache_pool.py), or None when the cache
    is not Redis."""
    global _client
    if _client is None:
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            _client = backend._cache.get_client(write=True)
    return _client


class _SlidingLog:
    """SLIDING_LOG on Redis, DRF's own code elsewhere; a cache error lets the request through."""

    _count: int | None = None
    _oldest: float | None = None
    _recorded: tuple[str, float] | None = None  # the log's key and the time this request was recorded at

    def allow_request(self, request, view) -> bool:
        try:
            client = _redis()
            if client is None:
                allowed = super().allow_request(request, view)
                if allowed and getattr(self, "key", None) is not None:
                    self._recorded = (self.key, self.now)
                return allowed
            if self.rate is None or (key := self.get_cache_key(request, view)) is None:
                return True
            self.now = self.timer()
            answer = check(client, key, self.now, self.duration, self.num_requests)
        except Exception as exc:  # any cache backend error: let the request through, loudly
            _warn_failure(exc)
            return True
        allowed, self._count = answer[0], answer[1]
        self._oldest = float(answer[2]) if len(answer) > 2 else None
        if allowed:
            self._recorded = (key, self.now)
        return bool(allowed)

    def take_back(self) -> None:
        """Take this request back out of the log, as if it had not been made (a login that succeeded)."""
        if self._recorded is None:
            return
        key, now = self._recorded
        self._recorded = None
        try:
            client = _redis()
            if client is not None:
                client.lrem(log_key(key), 1, repr(now))
                return
            history = self.cache.get(key, [])
            if now in history:
                history.remove(now)
                self.cache.set(key, history, self.duration)
        except Exception as exc:
            _warn_failure(exc)

    def wait(self) -> float | None:
        """DRF's Retry-After, from what SLIDING_LOG returned."""
        if self._count is None:
            return super().wait()
        remaining = self.duration - (self.now - self._oldest) if self._oldest is not None else self.duration
        available = self.num_requests - self._count + 1
        return remaining / available if available > 0 else None


class UserThrottle(_SlidingLog, UserRateThrottle):
    pass


class AddressThrottle(_SlidingLog, SimpleRateThrottle):
    """Requests per client address (NUM_PROXIES decides which address that is), whoever is logged in."""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginAddressThrottle(AddressThrottle):
    """Login attempts per client address."""

    scope = "login"


class TrackAddressThrottle(AddressThrottle):
    """The public tracking JSON per client address: its token is its only credential."""

    scope = "track"


class LoginUsernameThrottle(_SlidingLog, SimpleRateThrottle):
    """Failed logins for one username from one client address. Counting them per username alone let anyone who
    knew a driver's username hold the driver's own logins back from one machine; from one address, it holds back
    only that address."""

    scope = "login_username"
    username = ""

    def allow_request(self, request, view) -> bool:
        # Read outside the fail-open guard: a body that does not parse is the client's error (400), not the cache's.
        self.username = _username(request)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        if not self.username:
            return None  # the serializer or the form refuses it
        return self.cache_format % {"scope": self.scope, "ident": self.ident(request)}

    def ident(self, request) -> str:
        return f"{self.username.strip().lower()[:150]}@{self.get_ident(request)}"


class LoginAccountThrottle(LoginUsernameThrottle):
    """Failed logins for one username from any number of addresses: guessing one account's password from many
    machines is limited too, at a rate several addresses' worth above the per-address one."""

    scope = "login_account"

    def ident(self, request) -> str:
        return self.username.strip().lower()[:150]


def _username(request) -> str:
    # A DRF request carries the JSON body in .data; the admin's login form is a plain Django request.
    body = request.data if hasattr(request, "data") else request.POST
    username = body.get("username") if hasattr(body, "get") else None
    return username if isinstance(username, str) else ""


# Only failed logins count against these: every attempt is recorded as it arrives (so guesses sent in parallel
# are all counted), and one that succeeds is taken back out (`logged_in`). A fleet logging in at the start of a
# shift behind one address (a depot's Wi-Fi, a carrier's NAT) is not held up, nor a driver on two phones.
LOGIN_THROTTLES = [LoginAddressThrottle, LoginUsernameThrottle, LoginAccountThrottle]


def login_attempt(request) -> tuple[float | None, list]:
    """For a login outside DRF (the admin's form): the seconds to wait (None when it may go ahead) and the
    throttles that recorded the attempt, for `logged_in`. Every throttle records it, as DRF's own check does."""
    throttles = [cls() for cls in LOGIN_THROTTLES]
    waits = [throttle.wait() or 0 for throttle in throttles if not throttle.allow_request(request, None)]
    return (max(waits) if waits else None), throttles


def tracking_visit(request) -> int | None:
    """The tracking page and its socket, outside DRF, draw on the tracking JSON's per-address budget (one customer's
    page: a load, a socket, polls while the socket is down): the whole seconds to wait (a `Retry-After`), or None
    when it may go ahead. `request`: anything with the request's META (a socket's: `SocketRequest`)."""
    throttle = TrackAddressThrottle()
    if throttle.allow_request(request, None):
        return None
    return math.ceil(throttle.wait() or throttle.duration)


class SocketRequest:
    """What `get_ident` reads of a request, from a websocket's handshake: the peer's address and X-Forwarded-For."""

    def __init__(self, scope: dict):
        client = scope.get("client") or ("", 0)
        self.META = {"REMOTE_ADDR": client[0]}
        self.headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == b"x-forwarded-for"
        }


def logged_in(throttles: list) -> None:
    """The login these throttles recorded succeeded: it does not count against the limits."""
    for throttle in throttles:
        throttle.take_back()
