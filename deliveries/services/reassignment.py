"""Handing a delivery back to dispatch (SPEC 3.1): released by its driver, its driver gone offline or stale,
or ops pressing "reassign" (back to dispatch, a direct offer, or a forced assignment: one action each). It
keeps its history; the previous driver is not offered it again."""

from django.utils import timezone

from core.audit import Actor, atomic_action
from core.errors import BadInput, DomainError, InvalidTransition, NotFound
from core.fsm import run_transition, saving_changes
from deliveries import eta, messages
from deliveries.models import Delivery, DeliveryStatus, Escalation, EscalationLevel, Offer
from deliveries.services.assignment import DriverUnavailable, assign_locked
from deliveries.services.common import lock_delivery, transition_delivery
from deliveries.services.dispatch import (
    REASSIGNED_BY_OPS,
    Candidate,
    DispatchResult,
    announce_offer_locked,
    dispatch_locked,
    new_offer,
)
from deliveries.services.escalations import raise_escalation_locked
from deliveries.services.offers import pending_offer_of, withdraw_offer_locked
from deliveries.services.progress import AlreadyPickedUp, release_capacity_locked
from drivers.models import Driver, DriverState
from drivers.notifications import notify_driver
from drivers.services import lock_driver
from zones.geometry import haversine_km


def _hand_back(delivery: Delivery, *, actor: Actor, reason: str) -> None:
    """Unassign a locked, assigned delivery and tell its driver it was taken away."""
    driver_id = delivery.driver_id
    Offer.objects.accepted().filter(delivery=delivery, driver_id=driver_id).update(release_reason=reason)
    transition_delivery(
        delivery.unassign, actor=actor, payload={"reason": reason, "previous_driver_id": str(driver_id)}
    )
    driver = lock_driver(driver_id)
    release_capacity_locked(driver, actor=actor)
    notify_driver(driver_id, "delivery.reassigned", messages.delivery_taken(delivery, reason=reason))


def _redispatch(delivery: Delivery, *, actor: Actor) -> None:
    """Back to dispatch after a hand-back. The hand-back that reaches the zone's limit (3) alerts ops (SPEC 3.1:
    after 3 reassignments the delivery escalates) and dispatch still offers it; one past the limit is left to
    ops (`dispatch_locked` no longer offers it automatically)."""
    if delivery.reassignment_count >= delivery.zone.max_reassignments:
        raise_escalation_locked(
            delivery,
            level=EscalationLevel.ALERT,
            reason=Escalation.Reason.REASSIGNMENTS,
            detail=f"Reassigned {delivery.reassignment_count} times",
            actor=actor,
        )
    dispatch_locked(delivery)


def release_delivery(delivery_id, *, actor: Actor, reason: str) -> Delivery:
    """The driver hands back an accepted delivery before pickup."""
    with atomic_action():
        delivery = lock_delivery(delivery_id, seen_by=actor)
        if delivery.status != DeliveryStatus.ASSIGNED:
            if delivery.status == DeliveryStatus.PICKED_UP:
                raise AlreadyPickedUp()
            raise InvalidTransition(f"A delivery that is {delivery.status} cannot be released.")
        _hand_back(delivery, actor=actor, reason=f"released: {reason}")
        _redispatch(delivery, actor=actor)
    return delivery


def reassign_after_driver_loss(delivery_id, *, driver_id, actor: Actor, reason: str) -> None:
    """The driver went offline or stale holding this delivery: before pickup it goes back to dispatch; after
    pickup it is never reassigned automatically, it escalates (SPEC 3.1)."""
    with atomic_action():
        delivery = lock_delivery(delivery_id)
        if str(delivery.driver_id) != str(driver_id):
            return  # already handed back or finished meanwhile
        if delivery.status == DeliveryStatus.ASSIGNED:
            _hand_back(delivery, actor=actor, reason=reason)
            _redispatch(delivery, actor=actor)
        elif delivery.status == DeliveryStatus.PICKED_UP:
            # The driver locked (after the delivery: the fixed order), so a return online under way is waited for:
            # a driver back already has the order in hand, and their return, which closes the escalations their
            # loss opened (`go_online`), has run; one opened now would stay open.
            if lock_driver(driver_id).state != DriverState.OFFLINE:
                return
            cause = Escalation.Reason.DRIVER_STALE if reason == "stale" else Escalation.Reason.DRIVER_OFFLINE
            raise_escalation_locked(
                delivery,
                level=EscalationLevel.ALERT,
                reason=cause,
                detail=f"Driver {reason} while carrying it",
                actor=actor,
            )


class DriverRequired(BadInput):
    default_detail = "A forced assignment needs a driver."

    def __init__(self):
        super().__init__(fields={"driver_id": [self.default_detail]})


def send_back_to_dispatch(delivery_id, *, actor: Actor, seen: str | None = None) -> DispatchResult:
    """Ops press "reassign" naming no driver: the delivery goes back to dispatch, which offers it at once if
    anyone can take it. Ops' explicit reassign overrides the automatic limit on reassignments (`dispatch_locked`
    lets an ops actor past it). Returns what dispatch did, so ops can be told whether it was offered."""
    with atomic_action():
        delivery = _take_back_for_ops(delivery_id, actor=actor, seen=seen)
        return dispatch_locked(delivery, actor=actor)


def offer_directly(delivery_id, *, driver_id, actor: Actor, seen: str | None = None) -> Delivery:
    """Ops reassign to a named driver: a direct offer, which the driver may decline or let expire."""
    with atomic_action():
        delivery = _take_back_for_ops(delivery_id, actor=actor, seen=seen)
        driver = _lock_named_driver(driver_id)
        _require_offerable(driver)
        offer = _offer_to_named(delivery, driver, kind=Offer.Kind.DIRECT)
        announce_offer_locked(delivery, offer, actor=actor)
    return delivery


def force_assign(delivery_id, *, driver_id, actor: Actor, seen: str | None = None) -> Delivery:
    """Ops assign a named driver at once, without asking: recorded as an offer of kind `forced`, accepted."""
    if driver_id is None:
        raise DriverRequired()
    with atomic_action():
        delivery = _take_back_for_ops(delivery_id, actor=actor, seen=seen)
        driver = _lock_named_driver(driver_id)
        # The forced offer is inserted as pending: a driver answering another offer would break the
        # one-pending-offer-per-driver index (an IntegrityError, not an answer ops can act on).
        _require_no_pending_offer(driver)
        offer = _offer_to_named(delivery, driver, kind=Offer.Kind.FORCED)
        with saving_changes(offer):
            run_transition(offer.accept)
        assign_locked(delivery, driver, actor=actor, how="forced", payload={"offer_id": str(offer.pk)})
    return delivery


# What ops can reassign: before pickup only (after it the order is in the driver's bag), and nothing finished.
REASSIGNABLE = (DeliveryStatus.PENDING, DeliveryStatus.OFFERED, DeliveryStatus.ASSIGNED)


def reassign_as_ops_ask(delivery_id, *, driver_id, force: bool, actor: Actor, seen: str | None = None) -> Delivery:
    """The reassign form of the API and the console, read as the one action it asks for. `seen`: who had the
    delivery when the console's form was shown (`current_holder`), to act only if they still have it."""
    if force:
        return force_assign(delivery_id, driver_id=driver_id, actor=actor, seen=seen)
    if driver_id is not None:
        return offer_directly(delivery_id, driver_id=driver_id, actor=actor, seen=seen)
    return send_back_to_dispatch(delivery_id, actor=actor, seen=seen).delivery


class ChangedSinceSeen(DomainError):
    """The console's reassign form was filled in for a delivery that has changed hands since: a second submission
    of the same form (a double click, a resubmitted page) or a decision taken on what is no longer so. Acting would
    withdraw the offer the first one made (its driver told so, and left out of this delivery's dispatch for good)
    or take the delivery away from the driver it just went to."""

    code = "changed_since_seen"
    default_detail = "The delivery changed since this form was shown: nothing was done."


def _holder(delivery: Delivery, offer: Offer | None) -> str:
    """Who has a delivery now, as a reassign decides on it: its status, its driver, its pending offer."""
    return f"{delivery.status}:{delivery.driver_id or ''}:{offer.pk if offer else ''}"


def current_holder(delivery: Delivery) -> str:
    """Who has the delivery, read unlocked: what the console's reassign form is shown for."""
    return _holder(delivery, Offer.objects.pending().filter(delivery=delivery).first())


def _take_back_for_ops(delivery_id, *, actor: Actor, seen: str | None = None) -> Delivery:
    """Lock a delivery ops reassign and free it: its pending offer withdrawn, its driver (before pickup) relieved."""
    delivery = lock_delivery(delivery_id)
    offer = pending_offer_of(delivery)
    if seen is not None and seen != _holder(delivery, offer):
        raise ChangedSinceSeen(
            f"{delivery.external_id} changed since this form was shown: {_held(delivery, offer)}. Nothing was done."
        )
    if delivery.status not in REASSIGNABLE:
        if delivery.status == DeliveryStatus.PICKED_UP:
            raise AlreadyPickedUp()
        raise InvalidTransition(f"A delivery that is {delivery.status} cannot be reassigned.")
    if offer is not None:
        withdraw_offer_locked(delivery, offer, reason=REASSIGNED_BY_OPS, actor=actor)
    if delivery.status == DeliveryStatus.ASSIGNED:
        _hand_back(delivery, actor=actor, reason="reassigned by ops")
    return delivery


def _held(delivery: Delivery, offer: Offer | None) -> str:
    if offer is not None:
        return f"it is now offered to {offer.driver.name}"
    if delivery.driver_id is not None:
        return f"it is now {delivery.get_status_display().lower()}, with {delivery.driver.name}"
    return f"it is now {delivery.get_status_display().lower()}"


def _lock_named_driver(driver_id) -> Driver:
    driver = Driver.objects.select_for_update().filter(pk=driver_id).first()
    if driver is None:
        raise NotFound("No such driver.")
    return driver


def _offer_to_named(delivery: Delivery, driver: Driver, *, kind: str) -> Offer:
    """The offer to a driver ops named: distance and ETA from its last known position, as dispatch would show."""
    if driver.last_lat is None:
        distance = 0.0
    else:
        distance = haversine_km(driver.last_lat, driver.last_lng, delivery.pickup_lat, delivery.pickup_lng)
    speeds = eta.Speeds(delivery.zone, timezone.now())
    candidate = Candidate(driver, distance, speeds.seconds(distance, driver.vehicle))
    offer = new_offer(delivery, driver, candidate=candidate, kind=kind, speeds=speeds)
    offer.save(force_insert=True)
    return offer


def _require_offerable(driver: Driver) -> None:
    if driver.state != DriverState.AVAILABLE:
        raise DriverUnavailable(f"{driver.name} is {driver.state.replace('_', ' ')}.")
    _require_no_pending_offer(driver)


def _require_no_pending_offer(driver: Driver) -> None:
    if Offer.objects.pending_for_driver(driver).exists():
        raise DriverUnavailable(f"{driver.name} is answering another offer.")
