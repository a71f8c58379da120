"""The nightly rollup: each zone's and driver's facts of a finished local day stored as one row. Re-running a day
replaces its rows with the same figures (idempotent)."""

from datetime import date, timedelta

from django.db import transaction

from analytics.facts import drivers_day_facts, local_today, zone_day_facts
from analytics.models import DriverDay, ZoneDay
from drivers.models import Driver
from zones.models import Zone

# Days rolled up each night: yesterday, and the day before for anything that finished late.
NIGHTLY_DAYS = 2


def roll_up_day(zone: Zone, day: date) -> None:
    """Store the facts of `zone` and its drivers on `day` (the zone's local day)."""
    with transaction.atomic():
        ZoneDay.objects.update_or_create(zone=zone, day=day, defaults={"facts": zone_day_facts(zone, day)})
        drivers = list(Driver.objects.filter(home_zone=zone).select_related("home_zone", "user"))
        facts = drivers_day_facts(drivers, day) if drivers else {}
        for driver in drivers:
            DriverDay.objects.update_or_create(driver=driver, day=day, defaults={"facts": facts[driver.pk]})


def roll_up_recent_days(days: int = NIGHTLY_DAYS) -> int:
    """Roll up the last `days` finished local days of every zone; returns the zone-days written."""
    written = 0
    for zone in Zone.objects.all():
        today = local_today(zone)
        for back in range(days, 0, -1):
            roll_up_day(zone, today - timedelta(days=back))
            written += 1
    return written
