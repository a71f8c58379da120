"""Helpers every delivery action shares: locking in the fixed order, applying a transition with its audit
event and webhook, and reporting to the driver."""

from django_fsm import can_proceed

from core.audit import Actor, record_event
from core.errors import InvalidTransition, NotFound
from deliveries.models import Delivery
from deliveries.services.escalations import resolve_gone_causes
from deliveries.webhooks import enqueue_webhook


def lock_delivery(delivery_id, *, driver=None, merchant=None) -> Delivery:
    """Lock the delivery row: always the first lock an action takes (the order is delivery, offer, driver,
    escalation, everywhere, so two actions never wait for each other in a circle). Scoped to a driver or merchant, a
    delivery that is not theirs is reported as missing (API.md: 404, never reveal another party's objects)."""
    # of=("self",): lock the delivery row only. A plain FOR UPDATE over the join also locks its merchant and zone
    # rows: every action on a zone's or merchant's deliveries then waits for the others, the rows of a join are
    # locked in no fixed order (deadlocks), and inserting a delivery (FOR KEY SHARE on its merchant) waits too.
    rows = Delivery.objects.select_for_update(of=("self",)).select_related("merchant", "zone")
    if driver is not None:
        rows = rows.filter(driver=driver)
    if merchant is not None:
        rows = rows.filter(merchant=merchant)
    delivery = rows.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


def transition_delivery(
    delivery: Delivery, transition: str, *args, actor: Actor, event: str | None = None, payload=None
) -> None:
    """Apply one lifecycle transition to a locked delivery, save it, audit it and queue the merchant's webhook.
    Must run inside the caller's transaction."""
    method = getattr(delivery, transition)
    if not can_proceed(method):
        raise InvalidTransition(f"A delivery that is {delivery.status} cannot be {transition.replace('_', ' ')}.")
    previous = delivery.status
    method(*args)
    delivery.save()
    record_event(
        event or f"delivery.{delivery.status}",
        actor=actor,
        subject=delivery,
        delivery_id=delivery.pk,
        driver_id=delivery.driver_id,
        from_state=previous,
        to_state=delivery.status,
        payload=payload or {},
    )
    if delivery.status != previous:
        enqueue_webhook(delivery, f"delivery.{delivery.status}")
        resolve_gone_causes(delivery, actor=actor)
