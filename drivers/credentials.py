"""Token → driver, held in process memory for the location ingest route (drivers/ingest.py), which must not pay
a database read per ping.

An entry is trusted only while the user's *credential version* in Redis is the one it was loaded with: the
ingest route reads that version in the same round trip as the throttle state, so revoking a token, deactivating
a user or setting a driver offline (each bumps the version, after commit) takes effect on the next ping in every
process, not after a timeout. Entries also expire after ENTRY_TTL_S, so even a lost bump (Redis down at that
moment) stops a revoked token within that time. Only online drivers are cached: an offline driver's ping reads
the database again, so going online shows at once.
"""

import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction
from rest_framework.authtoken.models import Token

from core import tokens
from drivers import locations
from drivers.models import Driver, DriverState

ENTRY_TTL_S = 30.0
MAX_ENTRIES = 200_000


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

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


cache = _Cache()


def load(key: str, version: str | None) -> DriverCredential | None:
    """The driver behind an active user's token, read from the database (one query); None for anything else
    (unknown token, inactive user, not a driver): the caller lets the full API answer those."""
    return load_many([key], version).get(key)


def load_many(keys: list[str], version: str | None) -> dict[str, DriverCredential]:
    """`load` for many tokens in one query: the valid ones, by token."""
    rows = Token.objects.filter(key__in=keys, user__is_active=True, user__driver__isnull=False).values_list(
        "key", "user_id", "user__driver__id", "user__driver__state", "created"
    )
    now, loaded_at = time.time(), time.monotonic()
    found = {}
    for key, user_id, driver_id, state, created in rows:
        expires_at = (created + tokens.lifetime("driver")).timestamp()
        if now >= expires_at:
            continue  # Django answers it: 401 token_expired
        online = state != DriverState.OFFLINE
        found[key] = DriverCredential(user_id, str(driver_id), online, version, loaded_at, expires_at)
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
