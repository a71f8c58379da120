"""What happens to an assigned delivery: picked up, delivered or failed by its driver; cancelled by its
merchant or by ops before pickup."""

from django_fsm import can_proceed

from core.audit import Actor, atomic_action
from core.errors import DomainError
from deliveries import messages
from deliveries.models import Delivery, DeliveryStatus
from deliveries.services.assignment import active_delivery_count
from deliveries.services.common import lock_delivery, transition_delivery
from deliveries.services.costs import record_cost_locked
from deliveries.services.offers import pending_offer_of, withdraw_offer_locked
from drivers.models import Driver
from drivers.notifications import notify_driver
from drivers.services import lock_driver, transition_driver


class AlreadyPickedUp(DomainError):
    code = "already_picked_up"
    default_detail = "The delivery has been picked up; it can no longer be cancelled or handed back."


def pick_up_delivery(delivery_id, *, actor: Actor) -> Delivery:
    with atomic_action():
        delivery = lock_delivery(delivery_id, seen_by=actor)
        transition_delivery(delivery.pick_up, actor=actor)
        _tell_driver(delivery)
    return delivery


def deliver_delivery(delivery_id, *, actor: Actor, proof: dict | None = None) -> Delivery:
    with atomic_action():
        delivery = lock_delivery(delivery_id, seen_by=actor)
        transition_delivery(delivery.deliver, proof, actor=actor)
        record_cost_locked(delivery)
        release_capacity_locked(lock_driver(delivery.driver_id), actor=actor)
        _tell_driver(delivery)
    return delivery


def fail_delivery(delivery_id, *, actor: Actor, reason: str) -> Delivery:
    with atomic_action():
        delivery = lock_delivery(delivery_id, seen_by=actor)
        transition_delivery(delivery.fail, reason, actor=actor, payload={"reason": reason})
        record_cost_locked(delivery)
        release_capacity_locked(lock_driver(delivery.driver_id), actor=actor)
        _tell_driver(delivery)
    return delivery


def _tell_driver(delivery: Delivery) -> None:
    """`delivery.updated` on the driver's stream: the app (and any other device of the driver) stays in step."""
    notify_driver(delivery.driver_id, "delivery.updated", messages.driver_delivery(delivery))


def cancel_delivery(delivery_id, *, actor: Actor, reason: str) -> Delivery:
    """By its merchant (only its own) or by ops, before pickup."""
    with atomic_action():
        delivery = lock_delivery(delivery_id, seen_by=actor)
        if delivery.status in (DeliveryStatus.PICKED_UP, DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
            raise AlreadyPickedUp()
        offer = pending_offer_of(delivery)
        if offer is not None:
            withdraw_offer_locked(delivery, offer, reason="cancelled", actor=actor, needs_driver=False)
        driver_id = delivery.driver_id
        transition_delivery(delivery.cancel, reason, actor=actor, payload={"reason": reason})
        record_cost_locked(delivery)
        if driver_id is not None:
            release_capacity_locked(lock_driver(driver_id), actor=actor)
            notify_driver(driver_id, "delivery.cancelled", messages.delivery_taken(delivery, reason=reason))
    return delivery


def release_capacity_locked(driver: Driver, *, actor: Actor) -> None:
    """A locked busy driver whose load dropped below capacity is available again (SPEC 2.2, busy → available),
    inside the caller's transaction."""
    if can_proceed(driver.free_capacity) and active_delivery_count(driver) < driver.capacity:
        transition_driver(driver.free_capacity, actor=actor, reason="capacity freed")
