"""Helpers every delivery action shares: locking in the fixed order, applying a transition with its audit
event and webhook, and reporting to the driver."""

from core import compiled
from core.audit import Actor, record_event
from core.compiled import CompiledRead
from core.errors import NotFound
from core.fsm import run_transition, saving_changes
from deliveries import messages
from deliveries.models import Delivery
from deliveries.services.escalations import resolve_gone_causes
from deliveries.services.tracking import delivery_changed_locked
from deliveries.webhooks import enqueue_webhook


def lock_delivery(delivery_id, *, seen_by: Actor | None = None) -> Delivery:
    """Lock the delivery row: always the first lock an action takes (the order is delivery, offer, driver,
    escalation, everywhere, so two actions never wait for each other in a circle). Seen by a driver or merchant,
    a delivery that is not theirs is reported as missing (API.md: 404, never reveal another party's objects)."""
    # of=("self",): lock the delivery row only. A plain FOR UPDATE over the join also locks its merchant and zone
    # rows: every action on a zone's or merchant's deliveries then waits for the others, the rows of a join are
    # locked in no fixed order (deadlocks), and inserting a delivery (FOR KEY SHARE on its merchant) waits too.
    rows = _lockable()
    if seen_by is not None and seen_by.is_driver:
        rows = rows.filter(driver_id=seen_by.id)
    if seen_by is not None and seen_by.is_merchant:
        rows = rows.filter(merchant_id=seen_by.id)
    delivery = rows.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


def lock_delivery_of_offer(offer_id, *, driver_id=None) -> Delivery | None:
    """Lock the delivery of an offer (of this driver's, when given) found through the offer in the same
    statement: the first lock an offer's answer takes, without reading the offer first. None if there is none."""
    if driver_id is None:
        found = _delivery_of_offer.instances(offer_id)
    else:
        found = _delivery_of_drivers_offer.instances(offer_id, driver_id)
    return found[0] if found else None


def _delivery_of_offer_query(offer_id, driver_id=None):
    offer = {"offers__pk": offer_id} | ({"offers__driver_id": driver_id} if driver_id is not None else {})
    return _lockable().filter(**offer)[:1]


# Every answer to an offer, and its expiry, starts here: compiled once (core.compiled).
_delivery_of_offer = CompiledRead(Delivery, _delivery_of_offer_query, (compiled.UUID,))
_delivery_of_drivers_offer = CompiledRead(Delivery, _delivery_of_offer_query, (compiled.UUID, compiled.UUID))


def _lockable():
    return Delivery.objects.select_for_update(of=("self",)).select_related("merchant", "zone")


def transition_delivery(
    transition, *args, actor: Actor, event: str | None = None, payload=None, setting: dict | None = None
) -> None:
    """Apply one lifecycle transition of a locked delivery (`transition_delivery(delivery.pick_up, ...)`), save
    it, audit it and queue the merchant's webhook. Must run inside the caller's transaction.

    Only the fields that change here are saved (`saving_changes`): the transition's, the ETA's, and `setting`,
    the fields the caller changes with the transition. A field changed on the delivery before is not."""
    delivery: Delivery = transition.__self__
    previous, previous_driver_id = delivery.status, delivery.driver_id
    with saving_changes(delivery):
        for name, value in (setting or {}).items():
            setattr(delivery, name, value)
        run_transition(transition, *args)
        delivery_changed_locked(delivery, previous_status=previous, previous_driver_id=previous_driver_id)
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
        enqueue_webhook(delivery, f"delivery.{delivery.status}", messages.delivery_status_changed(delivery))
        resolve_gone_causes(delivery, actor=actor)
