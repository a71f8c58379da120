"""What must hold between actions, whatever ran before and in whatever order (issue 13): the race tests and the
state machine check these after every round or step. Each returns a list of sentences; empty means it holds."""

from collections import Counter

from django.db.models import Count, Q
from django.utils import timezone

from core.models import AuditEvent
from deliveries.models import Delivery, DeliveryStatus, Escalation, EscalationStatus, Offer, OfferStatus
from drivers.models import Driver, DriverState

CARRYING = (DeliveryStatus.ASSIGNED, DeliveryStatus.PICKED_UP)
WAITING = (DeliveryStatus.PENDING, DeliveryStatus.OFFERED)


def _last_states(subject_kind: str, field: str) -> dict:
    """The `to_state` of each subject's latest state-changing audit event."""
    events = AuditEvent.objects.filter(subject_kind=subject_kind).exclude(to_state="").order_by("id")
    return {str(subject): state for subject, state in events.values_list(field, "to_state")}


def delivery_problems() -> list[str]:
    problems = []
    pending_offers = Counter(Offer.objects.pending().values_list("delivery_id", flat=True))
    trail = _last_states("delivery", "subject_id")
    for delivery in Delivery.objects.all():
        name = f"delivery {delivery.external_id} ({delivery.status})"
        offered = pending_offers.get(delivery.pk, 0)
        if delivery.status in WAITING and delivery.driver_id is not None:
            problems.append(f"{name} has a driver")
        if delivery.status in CARRYING and delivery.driver_id is None:
            problems.append(f"{name} has no driver")
        if (delivery.status == DeliveryStatus.OFFERED) != (offered == 1) or offered > 1:
            problems.append(f"{name} has {offered} pending offers")
        if trail.get(str(delivery.pk)) != delivery.status:
            problems.append(f"{name}: its audit trail ends in {trail.get(str(delivery.pk))!r}")
    return problems


def driver_problems() -> list[str]:
    problems = []
    carried = Count("deliveries", filter=Q(deliveries__status__in=CARRYING))
    not_picked_up = Count("deliveries", filter=Q(deliveries__status=DeliveryStatus.ASSIGNED))
    trail = _last_states("driver", "subject_id")
    pending = Counter(Offer.objects.pending().values_list("driver_id", flat=True))
    for driver in Driver.objects.annotate(carried=carried, assigned=not_picked_up):
        name = f"driver {driver.name} ({driver.state}, carries {driver.carried}/{driver.capacity})"
        if driver.carried > driver.capacity:
            problems.append(f"{name} is over capacity")
        if driver.state == DriverState.BUSY and driver.carried < driver.capacity:
            problems.append(f"{name} is busy with room to spare")
        if driver.state in (DriverState.AVAILABLE, DriverState.ON_BREAK) and driver.carried >= driver.capacity:
            problems.append(f"{name} is {driver.state} at capacity")
        if driver.state == DriverState.OFFLINE and driver.assigned:
            problems.append(f"{name} is offline holding a delivery not picked up")
        if pending.get(driver.pk, 0) and driver.state != DriverState.AVAILABLE:
            problems.append(f"{name} has a pending offer")
        if trail.get(str(driver.pk), DriverState.OFFLINE) != driver.state:
            problems.append(f"{name}: its audit trail ends in {trail.get(str(driver.pk))!r}")
    return problems


def offer_problems() -> list[str]:
    """An accepted offer is the assignment of its delivery only while that delivery is carried by its driver."""
    problems = []
    for delivery in Delivery.objects.filter(status__in=CARRYING):
        accepted = Offer.objects.filter(delivery=delivery, status=OfferStatus.ACCEPTED, release_reason="")
        drivers = set(accepted.values_list("driver_id", flat=True))
        if drivers - {delivery.driver_id}:
            problems.append(f"delivery {delivery.external_id}: an accepted offer of another driver is still live")
    return problems


def silent_deliveries(*, now=None) -> list[str]:
    """No silent failure (SPEC 2.3): once its zone's alert threshold has passed (and the sweeps ran), every open
    delivery is offered, assigned, picked up, held for `ready_at`, or covered by an open escalation."""
    now = now or timezone.now()
    escalated = set(Escalation.objects.exclude(status=EscalationStatus.RESOLVED).values_list("delivery_id", flat=True))
    silent = []
    for delivery in Delivery.objects.filter(status=DeliveryStatus.PENDING).select_related("zone"):
        since = delivery.waiting_since
        overdue = since is not None and (now - since).total_seconds() >= delivery.zone.escalation_alert_s
        if overdue and delivery.pk not in escalated:
            silent.append(f"delivery {delivery.external_id} has waited since {since:%H:%M:%S}, not escalated")
    return silent


def all_problems() -> list[str]:
    return delivery_problems() + driver_problems() + offer_problems()
