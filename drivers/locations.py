"""The live location index of online drivers (SPEC 1, "Location index").

With Redis: one GEO set per zone holds every indexed driver's position, a sorted set holds when each was last
seen, and a hash plus a "dirty" set buffer positions until `flush_positions` writes them to the database in
one batch. Without Redis, or while it is unreachable, positions go to the database (one UPDATE per batch, not
per ping) and searches run there: a bounding box on the indexed lat/lng columns, then exact haversine ordering.
Every fallback is counted (`relay_location_fallbacks_total`).
"""

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
import redis.asyncio as aioredis
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from core import metrics
from core.round_trip import RoundTrip
from drivers import index_command, trail
from drivers.models import Driver
from zones.geometry import bounding_box, haversine_km
from zones.selectors import active_zone_codes, zone_cache, zone_for_point

log = logging.getLogger(__name__)

MAX_POINT_AGE = timedelta(minutes=10)
FALLBACKS = metrics.counter(
    "relay_location_fallbacks_total", "Location index operations that fell back to the database because Redis failed"
)
# Every nearest-driver search, by the index that answered it: the share answered by the database is the
# fallback rate (SPEC 5, "share of searches that fell back to PostgreSQL").
SEARCHES = metrics.counter(
    "relay_location_searches_total", "Nearest-driver searches, by the index that answered", ["index"]
)
# After a failure, skip Redis for this long instead of paying its timeout on every request.
_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float
    recorded_at: datetime
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None


@dataclass(frozen=True)
class NearbyDriver:
    driver_id: str
    distance_km: float
    lat: float
    lng: float
    seen_at: datetime


class _Redis:
    def __init__(self) -> None:
        self._client: redis.Redis | None = None
        self._url = None
        self.down_until = 0.0
        self._lock = threading.Lock()

    def client(self) -> redis.Redis | None:
        url = settings.RELAY_LOCATION_REDIS_URL
        if not url or time.monotonic() < self.down_until:
            return None
        with self._lock:
            if self._client is None or self._url != url:
                self._client = redis.Redis(connection_pool=_pool(redis.BlockingConnectionPool, url, decode=True))
                self._url = url
            return self._client

    def failed(self, exc: Exception) -> None:
        log.warning("location index: Redis unavailable (%s); using the database", exc)
        FALLBACKS.inc()
        self.down_until = time.monotonic() + _RETRY_AFTER_S

    def reset(self) -> None:
        with self._lock:
            self._client = None
            self.down_until = 0.0


_redis = _Redis()
reset_redis = _redis.reset
redis_failed = _redis.failed
redis_client = _redis.client
# One asyncio client per event loop (a client's connections belong to the loop that opened them).
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def async_client() -> aioredis.Redis | None:
    """The running loop's Redis client for the index, or None (embedded mode, or Redis failed just now)."""
    url = settings.RELAY_LOCATION_REDIS_URL
    if not url or time.monotonic() < _redis.down_until:
        return None
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None or client.relay_url != url:
        # Raw bytes: the async callers only write, or read values that are not text (the throttle history).
        client = aioredis.Redis(connection_pool=_pool(aioredis.BlockingConnectionPool, url, decode=False))
        client.relay_url = url
        client.relay_round_trip = RoundTrip(client)
        _async_clients[loop] = client
    return client


# How long a caller waits for one of the pool's connections. All of them busy means this process is overloaded,
# not that Redis is down (a hung Redis fails the calls holding them after RELAY_REDIS_TIMEOUT_S, which frees
# them): waiting is cheaper than the database fallback.
_POOL_WAIT_S = 5.0


def _pool(pool_class, url: str, *, decode: bool):
    """A pool that makes a caller wait for a free connection. redis-py's default pool raises `Too many
    connections` past 100: a burst of pings from many sockets then counted as Redis being down, and every ping of
    the process went to the database for the next 5 s (seen in the benchmark's socket phase)."""
    timeout = settings.RELAY_REDIS_TIMEOUT_S
    return pool_class.from_url(
        url, timeout=_POOL_WAIT_S, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=decode
    )


_REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _key(*parts: str) -> str:
    return settings.RELAY_REDIS_KEY_PREFIX + ":".join(parts)


def usable_points(points: list[Point], *, now: datetime | None = None) -> list[Point]:
    """Points older than 10 minutes or from the future are dropped, not errors (API.md)."""
    now = now or timezone.now()
    return [p for p in points if now - MAX_POINT_AGE <= p.recorded_at <= now + timedelta(seconds=5)]


def record_positions(driver_id, points: list[Point], *, online: bool) -> int:
    """Take a batch of pings and index the newest one. Returns how many points were usable: none while the
    driver is offline, whose position is not tracked off shift at all. Reads nothing from the database:
    callers pass what they know."""
    points = usable_points(points)
    if not points or not online:
        return 0
    latest = max(points, key=lambda p: p.recorded_at)
    zone = zone_for_point(latest.lat, latest.lng)
    client = _redis.client()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            queue_position(pipe, str(driver_id), latest, zone.code if zone else None)
            pipe.execute()
        except _REDIS_ERRORS as exc:
            _redis.failed(exc)
            _write_database([(str(driver_id), latest, zone.pk if zone else None)])
    else:
        if settings.RELAY_LOCATION_REDIS_URL:
            FALLBACKS.inc()
        _write_database([(str(driver_id), latest, zone.pk if zone else None)])
    trail.follow(driver_id, points)
    return len(points)


async def arecord_positions(driver_id, points: list[Point], *, online: bool) -> int:
    """record_positions for async callers (the driver socket): the same command through the event loop's own
    Redis client, with no thread hop, in the loop's shared round trip (`RoundTrip`). Without Redis, or when it
    fails, the synchronous path (and its database fallback) runs in a thread."""
    usable = usable_points(points)
    if not usable or not online:
        return 0
    client = async_client()
    if client is None:
        return await DatabaseSyncToAsync(record_positions)(driver_id, points, online=online)
    member = str(driver_id)
    latest, zone_code = await anewest(usable)

    def queue(pipe) -> None:
        queue_position(pipe, member, latest, zone_code)
        pipe.hgetall(trail.carried_key(member))

    try:
        _, carried = await client.relay_round_trip.execute(queue)
    except _REDIS_ERRORS as exc:
        _redis.failed(exc)
        return await DatabaseSyncToAsync(record_positions)(driver_id, points, online=online)
    if carried:
        await trail.afollow(client, driver_id, carried, usable)
    return len(usable)


async def anewest(usable: list[Point]) -> tuple[Point, str | None]:
    """The newest of these usable points and the code of its zone (None outside every zone): what the index's
    command (`queue_position`) takes."""
    zones = await zone_cache.aload()
    latest = max(usable, key=lambda p: p.recorded_at)
    zone = zone_for_point(latest.lat, latest.lng, zones)
    return latest, zone.code if zone else None


def queue_position(pipe, member: str, point: Point, zone_code: str | None) -> None:
    """The index's command for an online driver's newest point, on a pipeline of either client (sync or async)."""
    seen = point.recorded_at.timestamp()
    prefix = settings.RELAY_REDIS_KEY_PREFIX
    index_command.queue_position(pipe, prefix, member, point.lng, point.lat, seen, zone_code or "")


def _write_database(rows: list[tuple[str, Point, int | None]]) -> None:
    """Last positions, one UPDATE per driver in the batch: the API sends one driver, the flush many."""
    by_id = {driver_id: (point, zone_id) for driver_id, point, zone_id in rows}
    drivers = [
        Driver(
            pk=driver_id,
            last_lat=point.lat,
            last_lng=point.lng,
            last_seen_at=point.recorded_at,
            current_zone_id=zone_id,
        )
        for driver_id, (point, zone_id) in by_id.items()
    ]
    Driver.objects.bulk_update(drivers, ["last_lat", "last_lng", "last_seen_at", "current_zone"], batch_size=500)


def last_position(driver: Driver) -> Point | None:
    """The driver's newest known position: the index's (current to the last ping) or, without Redis, the
    database's (written per batch there)."""
    client = _redis.client()
    if client is not None:
        try:
            pos = client.hgetall(_key("pos", str(driver.pk)))
        except _REDIS_ERRORS as exc:
            _redis.failed(exc)
        else:
            if pos:
                return Point(float(pos["lat"]), float(pos["lng"]), _from_ts(float(pos["t"])))
    if driver.last_lat is None or driver.last_seen_at is None:
        return None
    return Point(driver.last_lat, driver.last_lng, driver.last_seen_at)


def remove_from_index(driver: Driver) -> None:
    """Called when a driver goes offline: it no longer appears in searches."""
    client = _redis.client()
    if client is None:
        return
    member = str(driver.pk)
    try:
        pipe = client.pipeline(transaction=False)
        for code in active_zone_codes():
            pipe.zrem(_key("geo", code), member)
        pipe.zrem(_key("seen"), member)
        pipe.execute()
    except _REDIS_ERRORS as exc:
        _redis.failed(exc)


def flush_positions(batch: int = 5000) -> int:
    """Write buffered positions from Redis to the database in bulk (and, first, fill an index that Redis lost:
    `_restore_lost_index`). Returns how many drivers were written. Drivers whose positions the write failed (the
    database, or Redis, unreachable meanwhile) are marked for the next flush again: taken out of the set of those
    to write and not written, a driver who sent no further ping kept an older position and time in the database,
    which the stale sweep and the restore of a lost index read."""
    client = _redis.client()
    if client is None:
        return 0
    written = 0
    try:
        _restore_lost_index(client)
        _forget_long_silent(client)
        while True:
            members = client.spop(_key("dirty"), batch)
            if not members:
                return written
            try:
                written += _write_buffered(client, members)
            except BaseException:
                with contextlib.suppress(*_REDIS_ERRORS):  # Redis itself failed: it keeps them, or lost them all
                    client.sadd(_key("dirty"), *members)
                raise
    except _REDIS_ERRORS as exc:
        _redis.failed(exc)
        return written


# KEYS: the seen zset. ARGV: the oldest seen time kept, the prefix of the zones' GEO keys, then every zone's code.
FORGET_SILENT = """
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 1000)
if #silent == 0 then return 0 end
for i = 3, #ARGV do redis.call('ZREM', ARGV[2] .. ARGV[i], unpack(silent)) end
redis.call('ZREM', KEYS[1], unpack(silent))
return #silent
"""


def _forget_long_silent(client) -> int:
    """Take out of the searches every driver not seen for MAX_POINT_AGE: a driver leaves them when going offline
    (`remove_from_index`), but one who went offline while Redis was unreachable (or within the few seconds after,
    when this process does not try it) stayed in its zone's GEO set for as long as Redis kept its data. Each search
    takes the nearest CANDIDATE_POOL of a zone before it drops those not seen lately: enough of them where drivers
    end their shifts hid every driver behind them, and deliveries there escalated with nobody offered them. An
    online driver this silent was set offline by the stale sweep long before. Returns how many it took out."""
    cutoff = (timezone.now() - MAX_POINT_AGE).timestamp()
    return client.eval(FORGET_SILENT, 1, _key("seen"), cutoff, _key("geo", ""), *active_zone_codes())


def _write_buffered(client, members: list[str]) -> int:
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(_key("pos", member))
    rows = []
    zone_ids = {zone.code: zone.pk for zone in zone_cache.zones()}
    for member, pos in zip(members, pipe.execute(), strict=True):
        if pos:
            point = Point(float(pos["lat"]), float(pos["lng"]), _from_ts(float(pos["t"])))
            rows.append((member, point, zone_ids.get(pos.get("zone") or "")))
    rows = _newer_than_stored(rows)
    _write_database(rows)
    return len(rows)


# KEYS: pos hash, seen zset, the zone's GEO set. ARGV: member, lng, lat, seen, zone code. A driver the index has
# no position of gets the database's; one that has pinged since Redis came back keeps its own, newer one.
RESTORE_POSITION = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('GEOADD', KEYS[3], ARGV[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[1], 'lat', ARGV[3], 'lng', ARGV[2], 't', ARGV[4], 'zone', ARGV[5])
return 1
"""


def _restore_lost_index(client) -> int:
    """Put the database's last positions back into an index that Redis lost (it restarted without its data, or
    it is a new server). Until each driver pinged again, dispatch found nobody and escalated to ops, naming drivers
    standing at the pickup as "too far" (seen in production mode). A marker written with the index tells: the
    flush (every few seconds) finds it missing on a Redis that has no index, and writes it back with the online
    drivers' positions of the last MAX_POINT_AGE. Returns how many were restored.

    The marker goes first, so that two flushes never restore at once; a restore cut short (Redis lost again, the
    database unreachable) takes it back out, or no later flush would try again and the index would fill only as
    drivers ping."""
    marker = _key("index-kept-since")
    if not client.set(marker, timezone.now().isoformat(), nx=True):
        return 0
    try:
        restored = _restore_positions(client)
    except BaseException:
        with contextlib.suppress(*_REDIS_ERRORS):  # Redis went away again: it comes back without the marker
            client.delete(marker)
        raise
    if restored:
        log.warning(
            "location index: Redis held no index; the last positions of %d driver(s) restored from the database",
            restored,
        )
    return restored


def _restore_positions(client) -> int:
    rows = (
        Driver.objects.exclude(state="offline")
        .filter(last_seen_at__gte=timezone.now() - MAX_POINT_AGE, last_lat__isnull=False, current_zone__isnull=False)
        .values_list("pk", "last_lat", "last_lng", "last_seen_at", "current_zone__code")
        .iterator(chunk_size=2000)
    )
    restored = 0
    pipe = client.pipeline(transaction=False)
    for n, (pk, lat, lng, seen_at, zone_code) in enumerate(rows, 1):
        member = str(pk)
        keys = (_key("pos", member), _key("seen"), _key("geo", zone_code))
        pipe.eval(RESTORE_POSITION, len(keys), *keys, member, lng, lat, seen_at.timestamp(), zone_code)
        if n % 2000 == 0:
            restored += sum(pipe.execute())
    restored += sum(pipe.execute())
    return restored


def _newer_than_stored(rows: list[tuple[str, Point, int | None]]) -> list[tuple[str, Point, int | None]]:
    """The buffered positions the database does not already hold a newer one of. While Redis was unreachable, pings
    went straight to the database; a Redis that comes back with its data (it hung, the network split, it restarted
    from its dump) still buffers the position from before the outage. Written over the newer ones, it made every
    driver who pinged all through an outage longer than the stale limit look silent, and the stale sweep (which
    flushes first) took them offline and their deliveries away."""
    stored = Driver.objects.filter(pk__in=[member for member, _, _ in rows]).values_list("pk", "last_seen_at")
    seen = {str(pk): last_seen_at for pk, last_seen_at in stored}
    return [row for row in rows if seen.get(row[0]) is None or seen[row[0]] < row[1].recorded_at]


def _from_ts(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def nearest_drivers(
    lat: float,
    lng: float,
    *,
    radius_km: float,
    limit: int,
    max_age_s: int = 60,
    zone_codes: list[str] | None = None,
    now: datetime | None = None,
) -> list[NearbyDriver]:
    """Indexed drivers within radius_km of the point, nearest first, seen in the last max_age_s seconds."""
    now = now or timezone.now()
    zone_codes = zone_codes if zone_codes is not None else active_zone_codes()
    client = _redis.client()
    if client is not None:
        try:
            found = _nearest_redis(client, lat, lng, radius_km, limit, max_age_s, zone_codes, now)
            SEARCHES.labels(index="redis").inc()
            return found
        except _REDIS_ERRORS as exc:
            _redis.failed(exc)
    elif settings.RELAY_LOCATION_REDIS_URL:
        FALLBACKS.inc()
    SEARCHES.labels(index="database").inc()
    return _nearest_database(lat, lng, radius_km, limit, max_age_s, zone_codes, now)


# KEYS: the seen zset, then the GEO set of each zone searched. ARGV: lng, lat, radius (km), count. Each zone's
# nearest (member, distance, {lng, lat}) with the member's seen time appended: the search and the seen times in
# one round trip, where a pipeline of searches and then a ZMSCORE of what they found took two.
NEAREST = """
local found = {}
for i = 2, #KEYS do
  local hits = redis.call('GEOSEARCH', KEYS[i], 'FROMLONLAT', ARGV[1], ARGV[2], 'BYRADIUS', ARGV[3], 'km',
    'ASC', 'COUNT', ARGV[4], 'WITHCOORD', 'WITHDIST')
  for _, hit in ipairs(hits) do found[#found + 1] = hit end
end
if #found == 0 then return found end
local members = {}
for i, hit in ipairs(found) do members[i] = hit[1] end
local seen = redis.call('ZMSCORE', KEYS[1], unpack(members))
for i, hit in ipairs(found) do hit[4] = seen[i] end
return found
"""


def _nearest_redis(client, lat, lng, radius_km, limit, max_age_s, zone_codes, now) -> list[NearbyDriver]:
    keys = [_key("seen"), *(_key("geo", code) for code in zone_codes)]
    found = client.eval(NEAREST, len(keys), *keys, lng, lat, radius_km, limit)
    oldest = now.timestamp() - max_age_s
    results = []
    for member, dist, (hit_lng, hit_lat), seen in found:
        seen = None if seen is None else float(seen)
        if seen is not None and seen >= oldest:
            results.append(NearbyDriver(member, float(dist), float(hit_lat), float(hit_lng), _from_ts(seen)))
    results.sort(key=lambda hit: (hit.distance_km, hit.driver_id))
    return results[:limit]


def _nearest_database(lat, lng, radius_km, limit, max_age_s, zone_codes, now) -> list[NearbyDriver]:
    min_lat, max_lat, min_lng, max_lng = bounding_box(lat, lng, radius_km)
    rows = (
        Driver.objects.filter(
            last_lat__range=(min_lat, max_lat),
            last_lng__range=(min_lng, max_lng),
            last_seen_at__gte=now - timedelta(seconds=max_age_s),
            current_zone__code__in=zone_codes,
        )
        .exclude(Q(state="offline"))
        .values_list("pk", "last_lat", "last_lng", "last_seen_at")
    )
    results = []
    for pk, dlat, dlng, seen_at in rows:
        distance = haversine_km(lat, lng, dlat, dlng)
        if distance <= radius_km:
            results.append(NearbyDriver(str(pk), distance, dlat, dlng, seen_at))
    results.sort(key=lambda hit: (hit.distance_km, hit.driver_id))
    return results[:limit]
