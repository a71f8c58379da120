"""A driver's answer to an offer (accept, decline), its expiry, and its withdrawal (SPEC 2.1)."""

from django.db.models import F
from django.utils import timezone

from core.audit import Actor, atomic_action, record_event
from core.compiled import UUID, CompiledRead
from core.errors import DomainError, NotFound
from core.fsm import run_transition, saving_changes
from deliveries import messages, metrics
from deliveries.models import Delivery, DeliveryStatus, Escalation, EscalationLevel, Offer, OfferStatus
from deliveries.services.assignment import assign_locked
from deliveries.services.common import lock_delivery_of_offer, transition_delivery
from deliveries.services.dispatch import dispatch_locked
from deliveries.services.escalations import raise_escalation_locked
from drivers.models import Driver, DriverState
from drivers.notifications import notify_driver
from drivers.services import lock_driver

OFFER_EXPIRY = Actor.system("offer-expiry")


class OfferExpired(DomainError):
    code = "offer_expired"
    default_detail = "The offer expired before it was accepted."


class OfferNotPending(DomainError):
    code = "offer_not_pending"
    default_detail = "The offer has already been answered or withdrawn."


def _lock_offer(offer_id, *, seen_by: Actor | None = None) -> tuple[Delivery, Offer]:
    """Lock in the fixed order: the offer's delivery first, then the offer. A driver only finds its own."""
    driver_id = seen_by.id if seen_by is not None and seen_by.is_driver else None
    delivery = lock_delivery_of_offer(offer_id, driver_id=driver_id)
    if delivery is None:
        raise NotFound("No such offer.")
    return delivery, _locked_offer.instances(offer_id)[0]  # it exists: its delivery was found through it


# Compiled once (core.compiled): every answer to an offer, and its expiry, locks it.
_locked_offer = CompiledRead(
    Offer, lambda offer_id: Offer.objects.select_for_update().filter(pk=offer_id).order_by(), (UUID,)
)


def _check_answerable(offer: Offer) -> None:
    # The deadline is checked here, not left to the expiry job: an accept after it fails even if no job ran.
    if offer.status == OfferStatus.EXPIRED or (
        offer.status == OfferStatus.PENDING and timezone.now() >= offer.expires_at
    ):
        raise OfferExpired()
    if offer.status != OfferStatus.PENDING:
        raise OfferNotPending(f"The offer is {offer.status}.")


def _record_offer(offer: Offer, type: str, *, actor: Actor, payload: dict | None = None) -> None:
    metrics.OFFERS.labels(outcome=offer.status).inc()
    record_event(
        type,
        actor=actor,
        subject=offer,
        delivery_id=offer.delivery_id,
        driver_id=offer.driver_id,
        from_state=OfferStatus.PENDING,
        to_state=offer.status,
        payload=payload or {},
    )


def accept_offer(offer_id, *, actor: Actor) -> Delivery:
    with atomic_action():
        delivery, offer = _lock_offer(offer_id, seen_by=actor)
        _check_answerable(offer)
        locked_driver = lock_driver(offer.driver_id)
        with saving_changes(offer):
            run_transition(offer.accept)
        _record_offer(offer, "offer.accepted", actor=actor, payload={"response_s": _response_s(offer)})
        assign_locked(delivery, locked_driver, actor=actor, how="offer", payload={"offer_id": str(offer.pk)})
    return delivery


def decline_offer(offer_id, *, actor: Actor, reason: str, note: str = "") -> Offer:
    with atomic_action():
        delivery, offer = _lock_offer(offer_id, seen_by=actor)
        _check_answerable(offer)
        locked_driver = lock_driver(offer.driver_id)
        with saving_changes(offer):
            run_transition(offer.decline, reason, note)
        _record_offer(offer, "offer.declined", actor=actor, payload={"reason": reason, "note": note})
        with saving_changes(locked_driver):
            locked_driver.missed_offers_in_row = 0
        _pass_on(delivery, actor=actor)
    return offer


def expire_offer(offer_id) -> bool:
    """Expire a pending offer whose deadline has passed and pass the delivery on. Safe to run twice and
    early (it does nothing before the deadline). Returns whether it expired the offer."""
    took_offline = None
    with atomic_action():
        try:
            delivery, offer = _lock_offer(offer_id)
        except NotFound:
            return False
        if offer.status != OfferStatus.PENDING or timezone.now() < offer.expires_at:
            return False
        driver = lock_driver(offer.driver_id)
        _expire_locked(offer)
        limit = delivery.zone.missed_offers_before_offline
        if not offer.unheard:  # an offer the app could not hear is not one the driver let expire
            driver.missed_offers_in_row += 1
            driver.save(update_fields=["missed_offers_in_row"])
            if driver.missed_offers_in_row >= limit and driver.state != DriverState.OFFLINE:
                took_offline = driver.pk
        _pass_on(delivery, actor=OFFER_EXPIRY)
    if took_offline is not None:
        # After the expiry's commit (the driver's pending offers lock before them): if this fails, the stale sweep
        # takes the driver offline (`mark_stale_drivers`).
        from deliveries.services.availability import take_offline_for_missed_offers

        take_offline_for_missed_offers(took_offline, limit=limit, actor=OFFER_EXPIRY)
    return True


def withdraw_offer_locked(
    delivery: Delivery, offer: Offer, *, reason: str, actor: Actor, needs_driver: bool = True
) -> None:
    """Withdraw a locked pending offer of a locked delivery, inside the caller's transaction; the delivery needs
    a driver again, unless the caller ends it (`needs_driver=False`: a cancel takes it from offered straight to
    cancelled; a `pending` on the way would reach its merchant as a webhook, maybe after the `cancelled` one).

    An offer already past its deadline is not withdrawn but expired, as the expiry job would have: the deadline
    rules, not the job (an accept then is `offer_expired` too), so the app is told `expired`, the miss counts
    (unless the offer was unheard) and the driver is not asked for this delivery again."""
    if timezone.now() >= offer.expires_at:
        _expire_locked(offer)
        if not offer.unheard:
            # After the offer, as the fixed lock order has it; the caller may hold the driver's row already.
            Driver.objects.filter(pk=offer.driver_id).update(missed_offers_in_row=F("missed_offers_in_row") + 1)
    else:
        with saving_changes(offer):
            run_transition(offer.withdraw, reason)
        _record_offer(offer, "offer.withdrawn", actor=actor, payload={"reason": reason})
        notify_driver(offer.driver_id, "offer.withdrawn", messages.offer_withdrawn(offer, reason=reason))
    if needs_driver and delivery.status == DeliveryStatus.OFFERED:
        transition_delivery(delivery.mark_unoffered, actor=actor, payload={"offer_id": str(offer.pk)})


def _expire_locked(offer: Offer) -> None:
    """Expire a locked pending offer past its deadline and tell its driver, inside the caller's transaction."""
    with saving_changes(offer):
        run_transition(offer.expire)
    _record_offer(offer, "offer.expired", actor=OFFER_EXPIRY, payload={"unheard": True} if offer.unheard else None)
    notify_driver(offer.driver_id, "offer.withdrawn", messages.offer_withdrawn(offer, reason="expired"))


def pending_offer_of(delivery: Delivery) -> Offer | None:
    return Offer.objects.select_for_update().pending().filter(delivery=delivery).first()


def _pass_on(delivery: Delivery, *, actor: Actor) -> None:
    """After a decline or expiry: back to pending, escalate after too many rounds, offer the next candidate."""
    transition_delivery(delivery.mark_unoffered, actor=actor)
    rounds = Offer.objects.rounds(delivery).count()
    if rounds >= delivery.zone.escalation_max_offer_rounds and delivery.escalation_level < EscalationLevel.ALERT:
        raise_escalation_locked(
            delivery,
            level=EscalationLevel.ALERT,
            reason=Escalation.Reason.OFFER_ROUNDS,
            detail=f"{rounds} offers without acceptance",
        )
    dispatch_locked(delivery)


def _response_s(offer: Offer) -> float:
    return round((offer.responded_at - offer.sent_at).total_seconds(), 3)
