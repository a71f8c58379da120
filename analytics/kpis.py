"""The KPIs of a date range (SPEC 5): facts of each zone-day and driver-day (rolled up nightly, computed live for
days without a rollup row), merged, then turned into plainly named figures. API, CSV and dashboards read this."""

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import OuterRef, Subquery

from analytics.facts import LONGEST_STATE, day_window, drivers_day_facts, local_today, zone_day_facts
from analytics.models import DriverDay, ZoneDay
from core.models import AuditEvent
from drivers.models import Driver, DriverState
from zones.models import Zone, ZoneSnapshot


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def merge(facts: Iterable[dict]) -> dict:
    """Sum facts key by key: counts add, lists join, dicts add per key, money (decimal strings) adds exactly."""
    total: dict = {}
    for one in facts:
        for key, value in one.items():
            if isinstance(value, list):
                total[key] = total.get(key, []) + value
            elif isinstance(value, dict):
                inner = total.setdefault(key, {})
                for name, count in value.items():
                    inner[name] = inner.get(name, 0) + count
            elif isinstance(value, str):
                total[key] = str(Decimal(total.get(key, "0")) + Decimal(value))
            else:
                total[key] = total.get(key, 0) + value
    return total


def ratio(part, whole) -> float | None:
    return round(part / whole, 4) if whole else None


def percentile(values: list[float], p: int) -> float | None:
    """Nearest rank: the smallest value with at least p% of values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 1)


def _mean(total: float, count: int) -> float | None:
    return round(total / count, 2) if count else None


def _per(amount: Decimal, count: int) -> str | None:
    return str((amount / count).quantize(Decimal("0.01"))) if count else None


def summarise_deliveries(facts: dict) -> dict:
    # "0.00" when the range has no facts: money is a decimal string with 2 places (API.md), "0" is not one.
    fees, pay, idle = (Decimal(facts.get(key, "0.00")) for key in ("fees", "driver_pay", "idle_pay"))
    delivered, created = facts.get("delivered", 0), facts.get("deliveries", 0)
    eta_errors = facts.get("eta_error_s", [])
    return {
        "deliveries": created,
        "delivered": delivered,
        "failed": facts.get("failed", 0),
        "cancelled": facts.get("cancelled", 0),
        "completion_rate": ratio(delivered, created),
        "cancellation_rate": ratio(facts.get("cancelled", 0), created),
        "offers": facts.get("offers", 0),
        "offers_per_delivery": ratio(facts.get("offers", 0), created),
        "acceptance_rate": ratio(facts.get("offers_accepted", 0), facts.get("offers_answered", 0)),
        "decline_reasons": facts.get("decline_reasons", {}),
        "first_offer_success_rate": ratio(facts.get("first_offer_accepted", 0), facts.get("offered_deliveries", 0)),
        "time_to_assign_p50_s": percentile(facts.get("time_to_assign_s", []), 50),
        "time_to_assign_p90_s": percentile(facts.get("time_to_assign_s", []), 90),
        "reassignments": facts.get("reassignments", 0),
        "manual_reassignments": facts.get("manual_reassignments", 0),
        "escalations_by_level": facts.get("escalations_by_level", {"1": 0, "2": 0, "3": 0}),
        "delivery_time_p50_s": percentile(facts.get("delivery_time_s", []), 50),
        "delivery_time_p90_s": percentile(facts.get("delivery_time_s", []), 90),
        "eta_mae_s": round(sum(eta_errors) / len(eta_errors), 1) if eta_errors else None,
        "eta_in_window_rate": ratio(facts.get("eta_in_window", 0), len(eta_errors)),
        "driver_pay": str(pay),
        "idle_pay": str(idle),
        "surge_pay": str(Decimal(facts.get("surge_pay", "0.00"))),
        "fees": str(fees),
        "cost_per_delivery": _per(pay + idle, delivered),
        "margin_per_delivery": _per(fees - pay - idle, delivered),
        "idle_share_of_cost": ratio(float(idle), float(pay + idle)),
        "critical_share": ratio(facts.get("snapshots_by_band", {}).get("critical", 0), facts.get("snapshots", 0)),
        "busy_share": ratio(facts.get("snapshots_by_band", {}).get("busy", 0), facts.get("snapshots", 0)),
        "mean_pressure": _mean(facts.get("pressure_sum", 0.0), facts.get("snapshots", 0)),
        "mean_surge_multiplier": _mean(float(facts.get("surge_sum", "0")), facts.get("snapshots", 0)),
        "time_to_acknowledge_p50_s": percentile(facts.get("time_to_acknowledge_s", []), 50),
        "time_to_acknowledge_p90_s": percentile(facts.get("time_to_acknowledge_s", []), 90),
    }


DRIVER_ZERO = {
    **dict.fromkeys(["offers_received", "accepted", "declined", "expired", "releases"], 0),
    **dict.fromkeys(["offline_events", "stale_events", "deliveries_completed"], 0),
    **dict.fromkeys(["seconds_available", "seconds_busy", "seconds_on_break", "seconds_offline"], 0.0),
    "decline_reasons": {},
    "response_s": [],
    "delivery_pay": "0.00",
    "idle_pay": "0.00",
}


def summarise_driver(facts: dict) -> dict:
    facts = DRIVER_ZERO | facts
    answered = facts["accepted"] + facts["declined"] + facts["expired"]
    available, busy = facts["seconds_available"], facts["seconds_busy"]
    return {
        "offers_received": facts["offers_received"],
        "accepted": facts["accepted"],
        "declined": facts["declined"],
        "expired": facts["expired"],
        "acceptance_rate": ratio(facts["accepted"], answered),
        "decline_reasons": facts["decline_reasons"],
        "time_to_respond_p50_s": percentile(facts["response_s"], 50),
        "releases": facts["releases"],
        "release_rate": ratio(facts["releases"], facts["accepted"]),
        "offline_events": facts["offline_events"],
        "stale_events": facts["stale_events"],
        "hours_available": round(available / 3600, 2),
        "hours_busy": round(busy / 3600, 2),
        "hours_on_break": round(facts["seconds_on_break"] / 3600, 2),
        "hours_offline": round(facts["seconds_offline"] / 3600, 2),
        "utilisation": ratio(busy, available + busy),
        "deliveries_completed": facts["deliveries_completed"],
        "earnings": str(Decimal(facts["delivery_pay"]) + Decimal(facts["idle_pay"])),
    }


class _Activity:
    """Which days can hold facts at all: none before the first audit event or zone snapshot, none after today."""

    def __init__(self):
        firsts = [AuditEvent.objects.order_by("occurred_at").values_list("occurred_at", flat=True).first()]
        firsts += _first_snapshot_of_each_zone()
        self.first = min((first for first in firsts if first is not None), default=None)
        self._drivers: dict = {}

    def possible(self, zone: Zone, day: date) -> bool:
        # By local dates, not the day's window: the window of the last day a date can hold (9999-12-31) ends on a
        # date that cannot exist, and asking for it was a 500.
        return self.first is not None and zone.local_time(self.first).date() <= day <= local_today(zone)

    def active(self, driver: Driver, day: date) -> bool:
        """An event of the driver in the day (or in the span a state held then may end in), or online now."""
        key = (driver.home_zone_id, day)
        if key not in self._drivers:
            start, end = day_window(driver.home_zone, day)
            events = AuditEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end + LONGEST_STATE)
            online = Driver.objects.exclude(state=DriverState.OFFLINE).filter(state_changed_at__lt=end)
            self._drivers[key] = set(events.exclude(driver_id=None).values_list("driver_id", flat=True).distinct())
            self._drivers[key] |= set(online.values_list("pk", flat=True))
        return driver.pk in self._drivers[key]


def _first_snapshot_of_each_zone() -> list:
    """Each zone's first snapshot time (None for a zone without any), each read from the end of the zone's index.
    The first of them all, asked of the whole table (it has no index on the time alone), read and sorted every
    snapshot ever taken, 1440 more a zone each day, twice per KPI report: 72 ms for 3 zones' year, 0.07 ms so."""
    first = ZoneSnapshot.objects.filter(zone=OuterRef("pk")).order_by("taken_at").values("taken_at")[:1]
    return list(Zone.objects.annotate(first=Subquery(first)).values_list("first", flat=True))


def stored_or_live_zone_facts(zones: list[Zone], days: list[date]) -> dict:
    """{(zone_id, day): facts}: rollup rows where they exist, the rest computed from the raw data (today, or a
    day the nightly rollup missed)."""
    found = {(row.zone_id, row.day): row.facts for row in ZoneDay.objects.filter(zone__in=zones, day__in=days)}
    activity = _Activity()
    for zone in zones:
        for day in days:
            if (zone.pk, day) not in found and activity.possible(zone, day):
                found[(zone.pk, day)] = zone_day_facts(zone, day)
    return found


def stored_or_live_driver_facts(drivers: list[Driver], days: list[date]) -> dict:
    """As for zones; a driver with no event in a day (or around it) and offline now has no facts to compute."""
    found = {(row.driver_id, row.day): row.facts for row in DriverDay.objects.filter(driver__in=drivers, day__in=days)}
    activity = _Activity()
    live = defaultdict(list)  # (home zone, day): its drivers whose facts are computed (in one batch per day)
    for driver in drivers:
        for day in days:
            missing = (driver.pk, day) not in found
            if missing and activity.possible(driver.home_zone, day) and activity.active(driver, day):
                live[(driver.home_zone_id, day)].append(driver)
    for (_, day), batch in live.items():
        found |= {(driver_id, day): facts for driver_id, facts in drivers_day_facts(batch, day).items()}
    return found


@dataclass(frozen=True)
class KpiReport:
    deliveries: dict
    zones: list[dict]
    days: list[dict]
    drivers: list[dict]

    def as_dict(self) -> dict:
        return {"deliveries": self.deliveries, "zones": self.zones, "days": self.days, "drivers": self.drivers}


def kpi_report(first: date, last: date, *, zone: Zone | None = None) -> KpiReport:
    zones = [zone] if zone else list(Zone.objects.all())
    days = days_between(first, last)
    zone_facts = stored_or_live_zone_facts(zones, days)
    drivers = list(Driver.objects.filter(home_zone__in=zones).select_related("home_zone", "user").order_by("name"))
    driver_facts = stored_or_live_driver_facts(drivers, days)
    return KpiReport(
        deliveries=summarise_deliveries(merge(zone_facts.values())),
        zones=[
            {"zone": z.code} | summarise_deliveries(merge(zone_facts.get((z.pk, d), {}) for d in days)) for z in zones
        ],
        days=[
            {"day": d.isoformat()} | summarise_deliveries(merge(zone_facts.get((z.pk, d), {}) for z in zones))
            for d in days
        ],
        drivers=[
            {"driver_id": str(driver.pk), "name": driver.name, "zone": driver.home_zone.code} | figures
            for driver in drivers
            if _worked(figures := summarise_driver(merge(driver_facts.get((driver.pk, d), {}) for d in days)))
        ],
    )


def _worked(figures: dict) -> bool:
    """A driver with no offer and no time online in the range has no row (the fleet's idle accounts)."""
    return bool(figures["offers_received"] or figures["hours_available"] or figures["hours_busy"])
