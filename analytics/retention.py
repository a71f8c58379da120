"""Zone snapshots (one a zone a minute: 1,440 a zone each day) are deleted a local day at a time, once the whole day
is older than RELAY_ZONE_SNAPSHOT_RETENTION and rolled up: the KPI figures they give (band shares, mean pressure and
surge multiplier) are then read from the day's ZoneDay row, which the nightly rollup wrote and a later rollup keeps
(`analytics.rollup`). A day the rollup missed keeps its snapshots until it is rolled up (`roll_up_kpis`)."""

from datetime import date
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models.functions import TruncDate
from django.utils import timezone

from analytics.facts import day_window
from analytics.models import ZoneDay
from core.purge import delete_in_batches
from zones.models import Zone, ZoneSnapshot


def purge_rolled_up_snapshots() -> int:
    """The daily beat job: each zone's snapshots of its purgeable days, in short batches. Returns how many were
    deleted."""
    deleted = 0
    for zone in Zone.objects.all():
        for day in _purgeable_days(zone):
            start, end = day_window(zone, day)
            deleted += delete_in_batches(ZoneSnapshot.objects.filter(zone=zone, taken_at__gte=start, taken_at__lt=end))
    return deleted


def _purgeable_days(zone: Zone) -> list[date]:
    """The zone's local days that still have snapshots, ended before the retention began and are rolled up. Read
    from the old snapshots themselves, which past the first run are one day's and those of days never rolled up:
    counted from the first snapshot kept, a day the rollup missed would have every day purged since asked again,
    one more each run, for good."""
    kept_from = zone.local_time(timezone.now() - settings.RELAY_ZONE_SNAPSHOT_RETENTION).date()
    old = ZoneSnapshot.objects.filter(zone=zone, taken_at__lt=day_window(zone, kept_from)[0])
    days = old.annotate(day=TruncDate("taken_at", tzinfo=ZoneInfo(zone.time_zone))).values("day").distinct()
    return list(ZoneDay.objects.filter(zone=zone, day__in=days).order_by("day").values_list("day", flat=True))
