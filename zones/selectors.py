import asyncio
import time
from datetime import datetime
from decimal import Decimal
from threading import Lock

from channels.db import DatabaseSyncToAsync

from core import compiled
from core.compiled import CompiledRead
from zones.models import SNAPSHOT_IN_FORCE_FOR, Band, Zone, ZoneSnapshot


class _ZoneCache:
    """Active zones held in memory for a short while: the location hot path maps every batch to a zone."""

    ttl_s = 30.0

    def __init__(self) -> None:
        self._zones: list[Zone] = []
        self._loaded_at = float("-inf")
        self._lock = Lock()
        self._reading: asyncio.Task | None = None

    def zones(self) -> list[Zone]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl_s:
                self._zones = list(Zone.objects.filter(active=True).order_by("code"))
                self._loaded_at = time.monotonic()
            return self._zones

    async def aload(self) -> list[Zone]:
        """The same list from async code: the database is read (in a thread) only when the list is stale, once
        for all the callers that find it stale meanwhile (every ping of a busy process, every ttl_s): they share
        that read rather than each hopping to a thread, and resume together."""
        if time.monotonic() - self._loaded_at <= self.ttl_s:
            return self._zones
        loop = asyncio.get_running_loop()
        reading = self._reading
        if reading is None or reading.done() or reading.get_loop() is not loop:
            reading = self._reading = loop.create_task(DatabaseSyncToAsync(self.zones)())
        return await asyncio.shield(reading)  # a caller cancelled does not cancel the others' read

    def clear(self) -> None:
        with self._lock:
            self._loaded_at = float("-inf")


zone_cache = _ZoneCache()


def zone_for_point(lat: float, lng: float, zones: list[Zone] | None = None) -> Zone | None:
    """The active zone containing the point, or None. Zones do not overlap; the first match wins. From the
    in-memory zone list (or `zones`, that list as async code loaded it): an edit shows at once in this process
    and within 30 s in the others."""
    zones = zone_cache.zones() if zones is None else zones
    around = [z for z in zones if z.min_lat <= lat <= z.max_lat and z.min_lng <= lng <= z.max_lng]
    for zone in around:
        if zone.contains(lat, lng):
            return zone
    # On an edge no zone's inside claims (the service area's outer edge, a corner three zones share): the service
    # area is closed, so the first zone it borders takes it.
    return next((zone for zone in around if zone.on_border(lat, lng)), None)


def active_zone_codes() -> list[str]:
    return [zone.code for zone in zone_cache.zones()]


def bands_in_force(zone_ids: list[int], *, now: datetime) -> dict[int, ZoneSnapshot]:
    """The snapshot in force per zone (the latest, if recent): zones without one are treated as normal."""
    return {s.zone_id: s for s in ZoneSnapshot.objects.in_force(now=now).filter(zone_id__in=zone_ids)}


def band_in_force(zone: Zone, *, now: datetime) -> ZoneSnapshot | None:
    """One zone's snapshot in force: its latest, if recent enough. For one zone that is simply the latest of its
    recent snapshots (no per-zone subquery: every dispatch asks this)."""
    found = _latest_recent_snapshot.instances(zone.pk, now - SNAPSHOT_IN_FORCE_FOR)
    return found[0] if found else None


_latest_recent_snapshot = CompiledRead(
    ZoneSnapshot,
    lambda zone_id, since: ZoneSnapshot.objects.filter(zone_id=zone_id, taken_at__gte=since).order_by("-taken_at")[:1],
    (compiled.INTEGER, compiled.DATETIME),
)


def surge_in_force(zone: Zone, *, now: datetime) -> Decimal:
    """The multiplier on a new offer's pay: the band of the zone's snapshot in force, else the normal one."""
    snapshot = band_in_force(zone, now=now)
    return zone.surge_for(snapshot.band if snapshot else Band.NORMAL)
