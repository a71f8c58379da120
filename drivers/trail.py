"""What a carried delivery takes from its driver's pings (SPEC 1 and 4.1): the breadcrumb trail, thinned to one
point per CRUMB_EVERY_S, and, between pickup and delivery only, the customer's live location, pushed at most
every LOCATION_EVERY_S per delivery.

The deliveries app says what each driver carries (`carry`, `uncarry`, after commit). Every ping path then hands
the usable points of an online driver to one entry: `follow` (sync: the Django view), `afollow` (async: the
driver socket, whose `carried` was read in the index's round trip), or, on the ASGI ingest route, its own two
pipelines (`carried_key` read with the throttle, `follow_on` queued with the index, then `apush`: no extra round
trip). All of them run the same plan and queue the same commands (`follow_on`); only their I/O differs. Off shift
nothing arrives here (offline drivers' pings are dropped first).
With Redis the state is shared by every process; without it (embedded mode: one process) it lives in memory
behind the same few commands. Breadcrumbs wait in a buffer until the deliveries app `drain`s them into the
database in batches; deliveries whose driver moved wait in a set for the ETA refresh (`due_for_eta`).
"""

# Annotations stay unevaluated: drivers.locations imports this module while it is itself being imported.
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from channels.layers import get_channel_layer
from django.conf import settings

from core import ws
from drivers import locations
from drivers.notifications import push_to_group

log = logging.getLogger(__name__)

CRUMB_EVERY_S = 10
LOCATION_EVERY_S = 2
PICKED_UP = "picked_up"
PHASES = ("assigned", PICKED_UP)
_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def tracking_group(delivery_id) -> str:
    """The channel-layer group of a delivery's tracking sockets: one fan-out per message, however many watch."""
    return f"track.{delivery_id}"


def tracking_envelope(type: str, data: dict) -> dict:
    """A `/ws/track/` message (API.md's envelope); each socket adds its own `seq`."""
    return ws.envelope(type, data)


def location_data(point: locations.Point) -> dict:
    """`location` on the tracking socket and in the tracking JSON; its time in UTC, written as the API writes
    every other time (DRF's form: `Z`)."""
    recorded_at = point.recorded_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"lat": point.lat, "lng": point.lng, "recorded_at": recorded_at}


def _key(*parts: str) -> str:
    return settings.RELAY_REDIS_KEY_PREFIX + ":".join(parts)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Step:
    """What one batch of pings does to one carried delivery."""

    delivery_id: str
    crumbs: list[locations.Point]
    location: locations.Point | None  # to push, if the 2 s budget allows


def _plan(carried: dict, usable: list[locations.Point]) -> list[Step]:
    """From the driver's carried deliveries (`carry:<driver>`: delivery → phase, `<delivery>:t` → the last
    breadcrumb's time) and a batch of usable points: the breadcrumbs to keep and the location to push."""
    fields = {_text(name): _text(value) for name, value in carried.items()}
    points = sorted(usable, key=lambda p: p.recorded_at)
    steps = []
    for delivery_id, phase in fields.items():
        if phase not in PHASES:
            continue  # a `<delivery>:t` field
        last = float(fields.get(f"{delivery_id}:t", "-inf"))
        crumbs = []
        for point in points:
            if point.recorded_at.timestamp() >= last + CRUMB_EVERY_S:
                crumbs.append(point)
                last = point.recorded_at.timestamp()
        steps.append(Step(delivery_id, crumbs, points[-1] if phase == PICKED_UP else None))
    return steps


def carried_key(driver_id) -> str:
    """The hash of what the driver carries: a caller with a pipeline of its own reads it there (`follow_on`)."""
    return _key("carry", str(driver_id))


def follow_on(pipe, driver_id, carried: dict, usable: list[locations.Point]) -> list[Step]:
    """Queue on the caller's pipeline (sync, async or in-memory) what this batch does to the deliveries the driver
    carries (`carried`: the hash at `carried_key`, as read). The location throttles come last, in the order of the
    returned steps: after executing, hand them and the pipeline's results to `push`/`apush`."""
    driver_id = str(driver_id)
    steps = _plan(carried, usable) if usable else []
    pushes = [step for step in steps if step.location is not None]
    for step in steps:
        if step.crumbs:
            pipe.rpush(_key("crumbs"), *[_crumb(step.delivery_id, driver_id, point) for point in step.crumbs])
            pipe.hset(carried_key(driver_id), f"{step.delivery_id}:t", step.crumbs[-1].recorded_at.timestamp())
        pipe.sadd(_key("eta-due"), step.delivery_id)
    for step in pushes:
        pipe.set(_key("track-location", step.delivery_id), 1, px=LOCATION_EVERY_S * 1000, nx=True)
    return pushes


def _allowed(pushes: list[Step], results: list) -> list[Step]:
    return [step for step, took in zip(pushes, results[len(results) - len(pushes) :], strict=True) if took]


def push(pushes: list[Step], results: list) -> None:
    """Send the `location`s the 2 s budget allowed (sync: through the channel layer, best effort)."""
    for step in _allowed(pushes, results):
        push_to_group(tracking_group(step.delivery_id), tracking_envelope("location", location_data(step.location)))


async def apush(pushes: list[Step], results: list) -> None:
    """`push` for async callers."""
    layer = get_channel_layer()
    for step in _allowed(pushes, results):
        envelope = tracking_envelope("location", location_data(step.location))
        try:
            await layer.group_send(tracking_group(step.delivery_id), {"type": "stream.message", "message": envelope})
        except Exception:  # best effort, as every push: the page polls when its socket is quiet too long
            log.warning("tracking push for %s failed", step.delivery_id, exc_info=True)


def _crumb(delivery_id: str, driver_id: str, point: locations.Point) -> str:
    return f"{delivery_id}|{driver_id}|{point.lat}|{point.lng}|{point.recorded_at.timestamp()}"


# --- the two entries: the same plan and commands, sync or async I/O -------------------------------------------
def follow(driver_id, usable: list[locations.Point]) -> None:
    """For the synchronous ping path (the Django view; every ping in embedded mode)."""
    store = _store()
    if store is None or not usable:
        return
    try:
        carried = store.hgetall(carried_key(driver_id))
        if not carried:
            return
        pipe = store.pipeline(transaction=False)
        pushes = follow_on(pipe, driver_id, carried, usable)
        results = pipe.execute()
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); pings not followed", exc)
        return
    push(pushes, results)


async def afollow(client, driver_id, carried: dict, usable: list[locations.Point]) -> None:
    """For the async ping path of the driver socket, which read `carried` in the index's round trip
    (`arecord_positions`), on the event loop's Redis client."""
    try:
        async with client.pipeline(transaction=False) as pipe:
            pushes = follow_on(pipe, driver_id, carried, usable)
            results = await pipe.execute()
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); pings not followed", exc)
        return
    await apush(pushes, results)


# --- what the deliveries app tells and asks -----------------------------------------------------------------
def carry(driver_id, delivery_id, *, phase: str) -> None:
    """The driver now carries the delivery, `assigned` or `picked_up` (after the change committed)."""
    store = _store()
    if store is None:
        return
    key = carried_key(driver_id)
    try:
        pipe = store.pipeline(transaction=False)
        pipe.hset(key, str(delivery_id), phase)
        pipe.expire(key, 24 * 3600)  # a safety net for a lost `uncarry`: no trail outlives a day
        pipe.execute()
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); carry not recorded", exc)


def uncarry(driver_id, delivery_id) -> None:
    """The driver no longer carries the delivery (delivered, failed, cancelled, handed back)."""
    store = _store()
    if store is None:
        return
    try:
        store.hdel(carried_key(driver_id), str(delivery_id), f"{delivery_id}:t")
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); uncarry not recorded", exc)


def carry_again(carried: list[tuple]) -> bool:
    """`carry` once more each (driver, delivery, phase) that the deliveries app finds active in the database: a
    `carry` that Redis missed (down at that moment) left the delivery unfollowed to its end otherwise (no trail,
    no live location for the customer, no ETA refresh from pings), however soon Redis came back. Whether it was
    written (not without Redis, nor while it is down)."""
    store = _store()
    if store is None or not carried:
        return False
    try:
        pipe = store.pipeline(transaction=False)
        for driver_id, delivery_id, phase in carried:
            pipe.hset(carried_key(driver_id), str(delivery_id), phase)
        for key in {carried_key(driver_id) for driver_id, _, _ in carried}:
            pipe.expire(key, 24 * 3600)
        pipe.execute()
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); carried deliveries not restored", exc)
        return False
    return True


@dataclass(frozen=True)
class Crumb:
    delivery_id: str
    driver_id: str
    lat: float
    lng: float
    recorded_at: datetime


def drain(batch: int = 5000) -> list[Crumb]:
    """Take up to `batch` buffered breadcrumbs, oldest first (they leave the buffer)."""
    store = _store()
    if store is None:
        return []
    pipe = store.pipeline(transaction=True)
    pipe.lrange(_key("crumbs"), 0, batch - 1)
    pipe.ltrim(_key("crumbs"), batch, -1)
    try:
        raw, _ = pipe.execute()
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); breadcrumbs not flushed", exc)
        return []
    crumbs = []
    for line in raw:
        delivery_id, driver_id, lat, lng, ts = _text(line).split("|")
        crumbs.append(Crumb(delivery_id, driver_id, float(lat), float(lng), datetime.fromtimestamp(float(ts), UTC)))
    return crumbs


def put_back(crumbs: list[Crumb]) -> None:
    """Return drained breadcrumbs the database did not take to the head of the buffer, in their order: the next
    flush writes them (`drain` takes them out before they are written)."""
    lines = [_crumb(c.delivery_id, c.driver_id, locations.Point(c.lat, c.lng, c.recorded_at)) for c in crumbs]
    store = _store()  # None: Redis failed since the drain
    if store is not None:
        try:
            store.lpush(_key("crumbs"), *reversed(lines))
            return
        except _REDIS_ERRORS as exc:
            log.warning("tracking: Redis unavailable (%s)", exc)
    log.warning("tracking: %d breadcrumbs the database failed could not go back to the buffer: lost", len(crumbs))


def due_for_eta(batch: int = 5000) -> list[str]:
    """Deliveries whose driver sent points since the last call (they leave the set)."""
    store = _store()
    if store is None:
        return []
    try:
        due = store.spop(_key("eta-due"), batch)
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); ETAs not refreshed from pings", exc)
        return []
    return [_text(member) for member in due or []]


def due_for_eta_again(delivery_ids) -> None:
    """Return to the set deliveries `due_for_eta` gave that were not refreshed (the refresh failed first)."""
    store = _store()
    if store is None or not delivery_ids:
        return
    try:
        store.sadd(_key("eta-due"), *delivery_ids)
    except _REDIS_ERRORS as exc:
        log.warning("tracking: Redis unavailable (%s); %d ETAs wait for their next ping", exc, len(delivery_ids))


def _store():
    """Redis (sync client), the in-memory store of the embedded mode, or None while Redis is failing."""
    if not settings.RELAY_LOCATION_REDIS_URL:
        return _memory
    return locations.redis_client()


class _Memory:
    """The embedded mode's stand-in for the few Redis commands above (one process holds all state)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}
        self.lists: dict[str, list[str]] = {}
        self.sets: dict[str, set[str]] = {}
        self.expiry: dict[str, float] = {}

    def pipeline(self, transaction: bool = False):
        return _MemoryPipeline(self)

    def hgetall(self, key):
        with self.lock:
            return dict(self.hashes.get(key, {}))

    def hset(self, key, field, value):
        self.hashes.setdefault(key, {})[field] = str(value)

    def hdel(self, key, *fields):
        with self.lock:
            for field in fields:
                self.hashes.get(key, {}).pop(field, None)

    def expire(self, key, seconds):
        return True  # nothing outlives the process anyway

    def rpush(self, key, *values):
        self.lists.setdefault(key, []).extend(values)

    def lpush(self, key, *values):
        with self.lock:
            self.lists[key] = [*reversed(values), *self.lists.get(key, [])]

    def lrange(self, key, start, end):
        return list(self.lists.get(key, [])[start : end + 1])

    def ltrim(self, key, start, end):
        self.lists[key] = self.lists.get(key, [])[start:]

    def sadd(self, key, *members):
        self.sets.setdefault(key, set()).update(members)

    def spop(self, key, count):
        with self.lock:
            members = self.sets.get(key, set())
            return [members.pop() for _ in range(min(count, len(members)))]

    def set(self, key, value, *, px, nx):
        now = time.monotonic()
        if nx and self.expiry.get(key, 0) > now:
            return None
        self.expiry[key] = now + px / 1000
        return True


class _MemoryPipeline:
    def __init__(self, store: _Memory) -> None:
        self.store, self.calls = store, []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def execute(self):
        with self.store.lock:
            return [getattr(self.store, name)(*args, **kwargs) for name, args, kwargs in self.calls]


_memory = _Memory()
reset_memory = _memory.clear
