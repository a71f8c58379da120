"""Reads of the deliveries app, one function (or QuerySet method on the models) per question."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from core.audit import Recorded
from core.compiled import UUID, CompiledRead
from core.models import AuditEvent
from deliveries.models import Delivery, Escalation, EscalationStatus
from drivers.models import Driver, DriverState
from zones.models import HintOutcome, Zone, ZoneHint, ZoneSnapshot


def status_changes(delivery: Delivery) -> list[AuditEvent]:
    """The delivery's lifecycle as its merchant sees it: its own status events, oldest first."""
    held = getattr(delivery, "_status_changes", None)
    return held if held is not None else _status_changes.instances(delivery.pk)


def hold_status_changes(delivery: Delivery, recorded: Recorded) -> None:
    """For a delivery created by the action that recorded `recorded`, which holds every event of it then: its
    status changes taken from there, for the answer that shows them, rather than read back (issue 12)."""
    if recorded.complete:
        delivery._status_changes = [
            event
            for event in recorded
            if event.delivery_id == delivery.pk
            and event.subject_kind == "delivery"
            and event.type.startswith("delivery.")
        ]


# Read by every answer that shows a delivery to its merchant (the create's included): compiled once.
_status_changes = CompiledRead(
    AuditEvent,
    lambda delivery_id: AuditEvent.objects.for_delivery(delivery_id).filter(
        subject_kind="delivery", type__startswith="delivery."
    ),
    (UUID,),
)


RECENT_DEMAND = timedelta(minutes=15)
HINT_STATS_OVER = timedelta(hours=1)  # the board shows the hints of the last hour and how many worked


@dataclass(frozen=True)
class ZoneReading:
    """A zone's snapshot (saved or not) and what the ops board shows beside it."""

    snapshot: ZoneSnapshot
    open_escalations: int
    hints_sent: int
    hints_entered: int


def _count_per_zone(queryset: QuerySet, zone_field: str = "zone"):
    """A correlated count of `queryset`'s rows in the outer zone (0 when none)."""
    rows = (
        queryset.filter(**{zone_field: OuterRef("pk")})
        .order_by()
        .values(zone_field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows), 0)


def measure_zones(*, now: datetime) -> list[ZoneReading]:
    """Every active zone's demand and supply now, in one query, as unsaved snapshots. The band is the pressure's,
    or the one in force while the pressure has not fallen clear of it (`Zone.band_for`)."""
    zones = Zone.objects.filter(active=True).annotate(
        demand_open=_count_per_zone(Delivery.objects.open()),
        demand_recent=_count_per_zone(Delivery.objects.filter(created_at__gte=now - RECENT_DEMAND)),
        supply_available=_count_per_zone(Driver.objects.filter(state=DriverState.AVAILABLE), "current_zone"),
        supply_busy=_count_per_zone(Driver.objects.filter(state=DriverState.BUSY), "current_zone"),
        supply_on_break=_count_per_zone(Driver.objects.filter(state=DriverState.ON_BREAK), "current_zone"),
        open_escalations=_count_per_zone(
            Escalation.objects.exclude(status=EscalationStatus.RESOLVED), "delivery__zone"
        ),
        hints_sent=_count_per_zone(ZoneHint.objects.filter(sent_at__gte=now - HINT_STATS_OVER)),
        hints_entered=_count_per_zone(
            ZoneHint.objects.filter(sent_at__gte=now - HINT_STATS_OVER, outcome=HintOutcome.ENTERED)
        ),
        band_in_force=Subquery(ZoneSnapshot.objects.in_force(now=now).filter(zone=OuterRef("pk")).values("band")),
    )
    readings = []
    for zone in zones:
        pressure, band = zone.band_for(
            open_deliveries=zone.demand_open, available_drivers=zone.supply_available, held=zone.band_in_force or ""
        )
        snapshot = ZoneSnapshot(
            zone=zone,
            taken_at=now,
            demand_open=zone.demand_open,
            demand_recent=zone.demand_recent,
            supply_available=zone.supply_available,
            supply_busy=zone.supply_busy,
            supply_on_break=zone.supply_on_break,
            pressure=round(pressure, 2),
            band=band,
            surge_multiplier=zone.surge_for(band),
        )
        readings.append(ZoneReading(snapshot, zone.open_escalations, zone.hints_sent, zone.hints_entered))
    return readings
