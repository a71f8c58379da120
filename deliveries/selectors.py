"""Reads of the deliveries app, one function (or QuerySet method on the models) per question."""

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from core.models import AuditEvent
from deliveries.models import Delivery, Escalation, EscalationStatus
from drivers.models import Driver, DriverState
from zones.models import Zone


def status_changes(delivery: Delivery):
    """The delivery's lifecycle as its merchant sees it: its own status events, oldest first."""
    return AuditEvent.objects.for_delivery(delivery.pk).filter(subject_kind="delivery", type__startswith="delivery.")


# Pressure bands (SPEC 4.2): demand per available driver.
BUSY_AT = 1.0
CRITICAL_AT = 2.0


def zone_pressure() -> list[dict]:
    """Live demand and supply per active zone: open deliveries (and created in the last 15 min) against
    available and busy drivers present in the zone."""
    since = timezone.now() - timedelta(minutes=15)
    demand = dict(Delivery.objects.open().values_list("zone_id").annotate(n=Count("pk")))
    recent = dict(Delivery.objects.filter(created_at__gte=since).values_list("zone_id").annotate(n=Count("pk")))
    supply = {
        row["current_zone_id"]: row
        for row in Driver.objects.exclude(state=DriverState.OFFLINE)
        .values("current_zone_id")
        .annotate(
            available=Count("pk", filter=Q(state=DriverState.AVAILABLE)),
            busy=Count("pk", filter=Q(state=DriverState.BUSY)),
        )
    }
    escalations = dict(
        Escalation.objects.exclude(status=EscalationStatus.RESOLVED)
        .values_list("delivery__zone_id")
        .annotate(n=Count("pk"))
    )
    result = []
    for zone in Zone.objects.filter(active=True):
        open_count = demand.get(zone.pk, 0)
        available = supply.get(zone.pk, {}).get("available", 0)
        pressure = open_count / max(available, 1)
        band = "critical" if pressure >= CRITICAL_AT else "busy" if pressure >= BUSY_AT else "normal"
        if open_count and not available:
            band = "critical"
        result.append(
            {
                "code": zone.code,
                "name": zone.name,
                "open_deliveries": open_count,
                "created_last_15_min": recent.get(zone.pk, 0),
                "available_drivers": available,
                "busy_drivers": supply.get(zone.pk, {}).get("busy", 0),
                "pressure": round(pressure, 2),
                "band": band,
                "open_escalations": escalations.get(zone.pk, 0),
            }
        )
    return result
