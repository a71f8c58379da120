"""Token → driver, held in process memory for the location ingest route (drivers/ingest.py), which must not pay
a database read per ping.

An entry is trusted only while the user's *credential version* in Redis is the one it was loaded with: the
ingest route reads that version in the same round trip as the throttle state, so revoking a token, deactivating
a user or setting a driver offline (each bumps the version, after commit) takes effect on the next ping in every
process, not after a timeout. Entries also expire after ENTRY_TTL_S, so even a lost bump (Redis down at that
moment) stops a revoked token within that time. Only online drivers are cached: an offline driver's ping reads
the database again, so going online shows at once.

An entry in use is read again before it expires, in the background and together with the others due (`keep_fresh`):
otherwise every driver's token missed once per ENTRY_TTL_S in every process, each miss a read of a few tokens
at ~0.6 ms of CPU, a quarter to a half of the ingest route's CPU in `make bench` (issue 12).
"""

import asyncio
import itertools
import logging
import threading
import time
import weakref
from dataclasses import dataclass, replace

import redis
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import transaction
from rest_framework.authtoken.models import Token

from core import compiled, tokens
from core.compiled import CompiledRead
from drivers import locations
from drivers.models import Driver, DriverState

ENTRY_TTL_S = 30.0
MAX_ENTRIES = 200_000
REFRESH_AFTER_S = 20.0  # from this age, an entry in use is read again before it expires
REFRESH_GATHER_S = 1.0  # the entries come due are gathered this long, then read together
REFRESH_BATCH = 1000  # tokens per read

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriverCredential:
    user_id: int
    driver_id: str
    online: bool
    version: str | None  # the user's credential version when loaded (None: never bumped)
    loaded_at: float
    expires_at: float  # the token's expiry (unix time): the entry is void from then on


def version_key(user_id) -> str:
    return f"{settings.RELAY_REDIS_KEY_PREFIX}credv:{user_id}"


class _Cache:
    def __init__(self) -> None:
        self._entries: dict[str, DriverCredential] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> DriverCredential | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry.loaded_at > ENTRY_TTL_S or time.time() >= entry.expires_at:
            return None
        return entry

    def put(self, key: str, entry: DriverCredential) -> None:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()  # a crude bound: refills from the database at one read per token
            self._entries[key] = entry

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def refreshed(self, key: str, was: DriverCredential, fresh: DriverCredential | None) -> None:
        """What a refresh read for an entry that was `was`: kept with `was`'s version (the one the last ping
        checked; a bump since then is caught by the next ping), or dropped when the database no longer vouches
        for the token or the driver is offline. An entry replaced or dropped meanwhile is left as it is."""
        with self._lock:
            if self._entries.get(key) is not was:
                return
            if fresh is None or not fresh.online:
                del self._entries[key]
            else:
                self._entries[key] = replace(fresh, version=was.version)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = _Cache()


def load(key: str, version: str | None) -> DriverCredential | None:
    """The driver behind an active user's token, read from the database (one query); None for anything else
    (unknown token, inactive user, not a driver): the caller lets the full API answer those."""
    entry = load_many([key]).get(key)
    return None if entry is None else replace(entry, version=version)


def _drivers_tokens(keys):
    return Token.objects.filter(key__any=keys, user__is_active=True, user__driver__isnull=False).values_list(
        "key", "user_id", "user__driver__id", "user__driver__state", "created"
    )


# Compiled once: the ORM's compiling was most of a small read's CPU (a read of 1 token 0.56 → 0.15 ms, of 10
# tokens 0.55 → 0.22 ms, of 1,000 5.7 → 3.0 ms).
_drivers_tokens_read = CompiledRead(Token, _drivers_tokens, ([compiled.TEXT],))


def load_many(keys: list[str]) -> dict[str, DriverCredential]:
    """`load` for many tokens in one query (version None): the tokens it cannot vouch for are left out."""
    rows = _drivers_tokens_read(keys)
    now, loaded_at, lifetime = time.time(), time.monotonic(), tokens.lifetime("driver")
    found = {}
    for key, user_id, driver_id, state, created in rows:
        expires_at = (created + lifetime).timestamp()
        if now < expires_at:  # else Django answers it: 401 token_expired
            online = state != DriverState.OFFLINE
            found[key] = DriverCredential(user_id, str(driver_id), online, None, loaded_at, expires_at)
    return found


_load_many = DatabaseSyncToAsync(load_many, thread_sensitive=False)


class _Loads:
    """The tokens the ingest route misses are read many at a time, in one query in one thread: a cold process meets
    every driver's token at once, and each read pays for a thread hop and a query. One read at a time per process:
    the tokens missed while it runs wait for it and go together in the next one (under load, the batch grows to the
    requests in flight). Each caller awaits its own answer."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[asyncio.Future]] = {}
        self.reading: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks

    async def load(self, key: str) -> DriverCredential | None:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        if not self.waiting and self.reading is None:
            loop.call_soon(self._next)  # after the other requests of this turn have asked for theirs
        self.waiting.setdefault(key, []).append(answer)
        return await answer

    def _next(self) -> None:
        batch, self.waiting = self.waiting, {}
        self.reading = asyncio.ensure_future(self._read(batch)) if batch else None
        if self.reading is not None:
            self.reading.add_done_callback(lambda _: self._next())

    async def _read(self, batch: dict[str, list[asyncio.Future]]) -> None:
        answers = [answer for waiting in batch.values() for answer in waiting]
        try:
            found = await _load_many(list(batch))
        except Exception as exc:  # the database's error is every caller's, as a read of its own would be
            for answer in answers:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are the callers
            for answer in answers:
                answer.cancel()
            raise
        for key, waiting in batch.items():
            for answer in waiting:
                if not answer.done():
                    answer.set_result(found.get(key))


class _Refreshes:
    """The entries in use that are due, read again REFRESH_GATHER_S after the first of them came due, many per
    query, while the pings go on using them. A read that fails leaves them to expire (the next ping then reads its
    token as a miss does)."""

    def __init__(self) -> None:
        self.due: dict[str, DriverCredential] = {}
        self.task: asyncio.Task | None = None  # held: the loop keeps only weak references to tasks

    def want(self, key: str, entry: DriverCredential) -> None:
        self.due.setdefault(key, entry)
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await self._gathering()
            while self.due:
                batch = dict(itertools.islice(self.due.items(), REFRESH_BATCH))
                for key in batch:
                    del self.due[key]
                await self._read(batch)
        finally:
            self.task = None

    @staticmethod
    async def _gathering() -> None:
        await asyncio.sleep(REFRESH_GATHER_S)

    @staticmethod
    async def _read(batch: dict[str, DriverCredential]) -> None:
        try:
            found = await _load_many(list(batch))
        except Exception as exc:
            log.warning("Refreshing %d cached driver tokens failed (%r): each is read when it expires", len(batch), exc)
            return
        for key, was in batch.items():
            cache.refreshed(key, was, found.get(key))


# One reader and one refresher per event loop (their futures belong to that loop).
_loads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_refreshes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def aload(key: str) -> DriverCredential | None:
    """`load` for the ingest route (version None: the caller pairs it with the version it reads), sharing one
    query with the other tokens missed in this turn of the loop."""
    return await _of_this_loop(_loads, _Loads).load(key)


def keep_fresh(key: str, entry: DriverCredential) -> None:
    """A ping used this cached entry: from REFRESH_AFTER_S of age it is read again in the background, so that a
    token in use does not expire and miss."""
    if time.monotonic() - entry.loaded_at < REFRESH_AFTER_S:
        return
    _of_this_loop(_refreshes, _Refreshes).want(key, entry)


def _of_this_loop(registry: weakref.WeakKeyDictionary, make):
    loop = asyncio.get_running_loop()
    found = registry.get(loop)
    if found is None:
        found = registry[loop] = make()
    return found


def bump_version(user_id) -> None:
    """After commit, tell every process that this user's cached credentials are void."""
    if not settings.RELAY_LOCATION_REDIS_URL:
        return  # embedded mode: the ingest route is not in front, nothing is cached

    def bump() -> None:
        client = locations.redis_client()
        if client is None:
            return  # Redis down just now: entries expire within ENTRY_TTL_S
        try:
            client.incr(version_key(user_id))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            locations.redis_failed(exc)

    transaction.on_commit(bump)


def on_token_deleted(sender, instance: Token, **kwargs) -> None:
    bump_version(instance.user_id)


def on_user_saved(sender, instance, created: bool, **kwargs) -> None:
    if not created and not instance.is_active:
        bump_version(instance.pk)


def on_driver_offline(driver: Driver) -> None:
    bump_version(driver.user_id)
