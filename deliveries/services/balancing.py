"""Zone demand balancing (SPEC 4.2, ADR-030): every minute, a snapshot of each zone's demand and supply (kept for
analytics, pushed to ops as `zone.pressure`), rebalancing hints to drivers in calm zones next to a critical one,
and whether those hints worked. Surge and dispatch across zones read the snapshots (`ZoneSnapshot.objects.in_force`).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from core.audit import Actor, atomic_action, record_event
from core.purge import delete_in_batches
from deliveries import messages
from deliveries.models import Delivery, Offer
from deliveries.selectors import ZoneReading, measure_zones
from deliveries.services.ops_feed import push_ops
from drivers.models import Driver, DriverState
from drivers.notifications import notify_driver
from zones.models import HINT_EFFECT_WINDOW, HINT_INTERVAL, Band, HintOutcome, Zone, ZoneHint, ZoneSnapshot

BALANCER = Actor.system("balancer")


@dataclass(frozen=True)
class BalancingResult:
    readings: list[ZoneReading]
    hints: list[ZoneHint]
    hints_entered: int
    hints_not_entered: int


def take_zone_snapshots(*, now: datetime | None = None) -> BalancingResult:
    """The minute's balancing: measure hints sent earlier, store a snapshot per zone, hint drivers toward the
    critical zones, and push the readings to ops. Run by beat every minute."""
    now = now or timezone.now()
    with atomic_action():
        entered, not_entered = _measure_hints(now)
        readings = measure_zones(now=now)
        ZoneSnapshot.objects.bulk_create([reading.snapshot for reading in readings])
        hints = _send_hints(readings, now=now)
        push_ops("zone.pressure", messages.zone_pressure(readings))
    return BalancingResult(readings, hints, entered, not_entered)


def purge_old_zone_hints() -> int:
    """Delete the hints sent over RELAY_ZONE_HINT_RETENTION ago, in short batches (the daily beat job). Balancing
    reads only the last quarter hour's (the rate limit, the outcome) and the ops board the last hour's; no KPI
    counts them. Returns how many were deleted."""
    return delete_in_batches(ZoneHint.objects.filter(sent_at__lt=timezone.now() - settings.RELAY_ZONE_HINT_RETENTION))


def _measure_hints(now: datetime) -> tuple[int, int]:
    """A pending hint worked if its driver is now in the hinted zone; one older than the window did not."""
    pending = ZoneHint.objects.filter(outcome=HintOutcome.PENDING)
    entered = pending.filter(sent_at__gte=now - HINT_EFFECT_WINDOW, driver__current_zone=F("zone")).update(
        outcome=HintOutcome.ENTERED, entered_at=now
    )
    not_entered = pending.filter(sent_at__lt=now - HINT_EFFECT_WINDOW).update(outcome=HintOutcome.NOT_ENTERED)
    return entered, not_entered


def _send_hints(readings: list[ZoneReading], *, now: datetime) -> list[ZoneHint]:
    """For each critical zone, most pressed first: a `zone.hint` to every idle driver in a calm (normal)
    neighbouring zone who had no hint in the last HINT_INTERVAL."""
    snapshots = {reading.snapshot.zone_id: reading.snapshot for reading in readings}
    critical = sorted((s for s in snapshots.values() if s.band == Band.CRITICAL), key=lambda s: -s.pressure)
    if not critical:
        return []
    calm = {zone_id for zone_id, s in snapshots.items() if s.band == Band.NORMAL}
    links = Zone.neighbours.through.objects.filter(from_zone__in=[s.zone_id for s in critical], to_zone__in=calm)
    calm_neighbours: dict[int, list[int]] = {}
    for from_id, to_id in links.values_list("from_zone_id", "to_zone_id"):
        calm_neighbours.setdefault(from_id, []).append(to_id)
    recently_hinted = ZoneHint.objects.filter(driver=OuterRef("pk"), sent_at__gt=now - HINT_INTERVAL)
    idle = (  # available, carrying nothing and not answering an offer right now (SPEC 4.2: "idle drivers")
        Driver.objects.filter(state=DriverState.AVAILABLE)
        .exclude(Exists(Delivery.objects.carried_by(OuterRef("pk"))))
        .exclude(Exists(Offer.objects.pending_for_driver(OuterRef("pk"))))
        .exclude(Exists(recently_hinted))
    )
    drivers = (
        idle.select_for_update()
        .filter(current_zone__in=[zone_id for ids in calm_neighbours.values() for zone_id in ids])
        .order_by("pk")
    )
    waiting: dict[int, list[Driver]] = {}
    for driver in drivers:
        waiting.setdefault(driver.current_zone_id, []).append(driver)
    hints = []
    for snapshot in critical:
        for neighbour_id in calm_neighbours.get(snapshot.zone_id, []):
            for driver in waiting.pop(neighbour_id, []):
                hints.append(_hint_locked(driver, snapshot, now=now))
    return hints


def _hint_locked(driver: Driver, snapshot: ZoneSnapshot, *, now: datetime) -> ZoneHint:
    zone = snapshot.zone
    percent = round((snapshot.surge_multiplier - 1) * 100)
    hint = ZoneHint.objects.create(
        driver=driver,
        zone=zone,
        from_zone_id=driver.current_zone_id,
        sent_at=now,
        surge_multiplier=snapshot.surge_multiplier,
        message=f"high demand in {zone.name}" + (f", +{percent}%" if percent else ""),  # as SPEC 4.2 words it
    )
    record_event(
        "zone.hint_sent",
        actor=BALANCER,
        subject=hint,
        driver_id=driver.pk,
        payload={"zone": zone.code, "pressure": snapshot.pressure, "surge_multiplier": str(hint.surge_multiplier)},
    )
    notify_driver(driver.pk, "zone.hint", messages.zone_hint(hint))
    return hint
