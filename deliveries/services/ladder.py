"""The escalation ladder's scheduled half (SPEC 2.3); its event half lives in the actions (offer rounds,
reassignments, a driver lost while carrying a delivery)."""

from datetime import datetime, timedelta

from django.db.models import F
from django.utils import timezone

from core.audit import Actor, atomic_action
from core.time_zones import utc_clock
from deliveries import eta
from deliveries.models import OPEN_STATUSES, Breadcrumb, Delivery, DeliveryStatus, Escalation, EscalationLevel, Offer
from deliveries.services.common import lock_delivery
from deliveries.services.dispatch import dispatch_locked
from deliveries.services.escalations import raise_escalation_locked
from drivers import locations
from zones.geometry import haversine_km

LADDER = Actor.system("escalation")
# A driver counts as moving toward pickup once it is this much closer than when it was assigned.
PROGRESS_KM = 0.2


def run_ladder(*, now: datetime | None = None) -> int:
    """One pass over every delivery that may need escalating. Returns how many changed."""
    now = now or timezone.now()
    changed = 0
    climbing = Delivery.objects.open().filter(escalation_level__lt=EscalationLevel.CRITICAL)
    for delivery_id in climbing.values_list("pk", flat=True):
        changed += _climb_unassigned(delivery_id, now=now)
    assigned_long = Delivery.objects.filter(
        status=DeliveryStatus.ASSIGNED, assigned_at__lte=now - timedelta(seconds=60)
    ).select_related("zone", "driver")
    for delivery in assigned_long:
        window = timedelta(seconds=delivery.zone.not_moving_alert_s)
        if delivery.assigned_at <= now - window and _not_moving(delivery, since=now - window):
            detail = "Driver not moving toward pickup"
            changed += _escalate(delivery, Escalation.Reason.NOT_MOVING, detail, since=delivery.assigned_at)
    for delivery in Delivery.objects.filter(status=DeliveryStatus.PICKED_UP).select_related("zone", "driver"):
        due = _due_at_dropoff(delivery)
        if now > due + timedelta(seconds=delivery.zone.dropoff_overdue_alert_s):
            detail = f"Dropoff was due at {utc_clock(due)}"
            changed += _escalate(delivery, Escalation.Reason.OVERDUE, detail, since=delivery.picked_up_at, at=due)
    return changed


def _due_at_dropoff(delivery: Delivery) -> datetime:
    """The dropoff ETA as of pickup: the trip at the speed learned for the zone, vehicle and hour (SPEC 4.1), plus
    the dropoff's service time. Not the ETA shown now: refreshed from a stuck driver's pings, that one moves later
    with every minute lost, and would never be passed."""
    picked_up_at = delivery.picked_up_at
    trip_s = eta.Speeds(delivery.zone, picked_up_at).seconds(delivery.distance_km, delivery.driver.vehicle)
    return picked_up_at + timedelta(seconds=trip_s + eta.DROPOFF_SERVICE_S)


def _climb_unassigned(delivery_id, *, now: datetime) -> int:
    with atomic_action():
        delivery = lock_delivery(delivery_id)
        since = delivery.waiting_since  # not creation: a delivery held for `ready_at` is not waiting yet
        if delivery.status not in OPEN_STATUSES or since is None or since > now:
            return 0
        zone = delivery.zone
        waited = (now - since).total_seconds()
        level = EscalationLevel.NONE
        for threshold, step in (
            (zone.escalation_warn_s, EscalationLevel.WARN),
            (zone.escalation_alert_s, EscalationLevel.ALERT),
            (zone.escalation_critical_s, EscalationLevel.CRITICAL),
        ):
            if waited >= threshold:
                level = step
        if level <= delivery.escalation_level:
            return 0
        previous = delivery.escalation_level
        detail = f"Unassigned for {int(waited // 60)} min"
        if level == EscalationLevel.WARN:
            detail += ": search widened to neighbouring zones"
        raise_escalation_locked(delivery, level=level, reason=Escalation.Reason.UNASSIGNED, detail=detail, actor=LADDER)
        if previous < EscalationLevel.WARN <= level:
            dispatch_locked(delivery)  # widened search, right away
        return 1


def _escalate(seen: Delivery, reason: str, detail: str, *, since: datetime, at: datetime | None = None) -> int:
    """Escalate for `reason` once per assignment (or pickup) that began at `since`: a delivery reassigned to a
    second driver who does not move either is escalated again, though its first driver's escalation exists. Only
    if the delivery is still as the ladder saw it before locking it: picked up meanwhile, a "not moving toward
    pickup" would stay open to the door."""
    with atomic_action():
        delivery = lock_delivery(seen.pk)
        if delivery.status != seen.status or delivery.driver_id != seen.driver_id:
            return 0
        if delivery.escalations.filter(reason=reason, opened_at__gte=since).exists():
            return 0  # escalated for this once already
        raise_escalation_locked(
            delivery, level=EscalationLevel.ALERT, reason=reason, detail=detail, detail_at=at, actor=LADDER
        )
        return 1


def _not_moving(delivery: Delivery, *, since: datetime) -> bool:
    """Not PROGRESS_KM nearer the pickup than at `since` (and not there yet): no progress for the whole window, even
    if the driver made some before it. Where they were at `since` is their last breadcrumb by then, or, before the
    first, their distance when the offer was made."""
    driver = delivery.driver
    position = locations.last_position(driver)  # the index's, current to the last ping
    if position is None:
        return True
    now_km = haversine_km(position.lat, position.lng, delivery.pickup_lat, delivery.pickup_lng)
    if now_km <= PROGRESS_KM:
        return False
    then_km = _distance_to_pickup_at(delivery, driver, since)
    return then_km is None or now_km > then_km - PROGRESS_KM


def _distance_to_pickup_at(delivery: Delivery, driver, at: datetime) -> float | None:
    crumb = (
        Breadcrumb.objects.filter(delivery=delivery, driver=driver, recorded_at__lte=at)
        .order_by("-recorded_at")
        .values_list("lat", "lng")
        .first()
    )
    if crumb is not None:
        return haversine_km(*crumb, delivery.pickup_lat, delivery.pickup_lng)
    offer = Offer.objects.accepted().filter(delivery=delivery, driver=driver).order_by("-sent_at").first()
    return None if offer is None else offer.distance_km


def dispatch_waiting(*, now: datetime | None = None) -> int:
    """Retry dispatch for every pending delivery whose just-in-time hold is over (drivers come and go)."""
    now = now or timezone.now()
    waiting = Delivery.objects.filter(status=DeliveryStatus.PENDING).exclude(dispatch_not_before__gt=now)
    waiting = waiting.exclude(reassignment_count__gt=F("zone__max_reassignments"))
    offered = 0
    for delivery_id in waiting.order_by("created_at").values_list("pk", flat=True):
        with atomic_action():
            offered += dispatch_locked(lock_delivery(delivery_id)).offered
    return offered
