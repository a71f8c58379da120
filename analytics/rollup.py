"""The nightly rollup: each zone's and driver's facts of a finished local day stored as one row. Re-running a day
replaces its rows with the same figures (idempotent)."""

from datetime import date, timedelta

from django.db import transaction

from analytics.facts import SNAPSHOT_FACTS, drivers_day_facts, local_today, zone_day_facts
from analytics.models import DriverDay, ZoneDay
from drivers.models import Driver
from zones.models import Zone

# Days rolled up each night: yesterday, and the day before for anything that finished late.
NIGHTLY_DAYS = 2


def roll_up_day(zone: Zone, day: date) -> None:
    """Store the facts of `zone` and its drivers on `day` (the zone's local day)."""
    with transaction.atomic():
        stored = ZoneDay.objects.filter(zone=zone, day=day).values_list("facts", flat=True).first()
        facts = _keeping_purged_snapshots(zone_day_facts(zone, day), stored)
        ZoneDay.objects.update_or_create(zone=zone, day=day, defaults={"facts": facts})
        drivers = list(Driver.objects.filter(home_zone=zone).select_related("home_zone", "user"))
        facts = drivers_day_facts(drivers, day) if drivers else {}
        for driver in drivers:
            DriverDay.objects.update_or_create(driver=driver, day=day, defaults={"facts": facts[driver.pk]})


def _keeping_purged_snapshots(facts: dict, stored: dict | None) -> dict:
    """A day rolled up again (a correction, `roll_up_kpis`) after its snapshots were purged (analytics/retention.py)
    keeps the snapshot figures its row holds. Snapshots are only ever deleted by that purge, and only of a day
    already rolled up: fewer now than the row counted means purged, not a different day."""
    if stored and stored.get("snapshots", 0) > facts["snapshots"]:
        return facts | {key: stored[key] for key in SNAPSHOT_FACTS}
    return facts


def roll_up_recent_days(days: int = NIGHTLY_DAYS) -> int:
    """Roll up the last `days` finished local days of every zone; returns the zone-days written."""
    written = 0
    for zone in Zone.objects.all():
        today = local_today(zone)
        for back in range(days, 0, -1):
            roll_up_day(zone, today - timedelta(days=back))
            written += 1
    return written
