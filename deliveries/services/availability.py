"""A driver's availability (SPEC 2.2): online, breaks, offline by choice, by silence (stale) or by missed
offers. These live here, not in drivers/, because each change also decides what happens to the driver's
offer and deliveries."""

from datetime import datetime, timedelta
from functools import partial, wraps

from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django_fsm import can_proceed

from core.audit import Actor, atomic_action, record_event
from core.errors import DomainError, InvalidTransition
from core.models import AuditEvent
from deliveries import messages
from deliveries.models import Delivery, DeliveryStatus, Escalation, Offer, OfferStatus
from deliveries.services.assignment import active_delivery_count
from deliveries.services.common import lock_delivery
from deliveries.services.dispatch import dispatch_locked
from deliveries.services.escalations import driver_back_locked
from deliveries.services.offers import withdraw_offer_locked
from deliveries.services.ops_feed import push_ops
from deliveries.services.reassignment import reassign_after_driver_loss
from drivers import locations
from drivers.models import Break, Driver, DriverState, Shift
from drivers.notifications import notify_driver
from drivers.selectors import current_shift
from drivers.services import end_shift, lock_driver, start_shift, transition_driver


def set_availability(requested: str, *, actor: Actor) -> Driver:
    """The driver app's availability switch: the action behind the transition that leads to the requested state
    from the current one. Asking for the current state changes nothing. Returns the driver as it now is."""
    driver = Driver.objects.get(pk=actor.id)
    if requested == driver.state:
        return driver
    chosen = next((t for t in _requestable(driver) if t.target == requested), None)
    if chosen is None:
        raise InvalidTransition(_allowed_now(driver))
    action = {
        "go_online": go_online,
        "start_break": start_break,
        "end_break": end_break,
        "go_offline": partial(take_offline, reason="driver"),
    }[chosen.name]
    action(driver.pk, actor=actor)
    driver.refresh_from_db()
    return driver


def _requestable(driver: Driver) -> list:
    return [t for t in driver.get_available_state_transitions() if t.custom.get("requested")]


def _allowed_now(driver: Driver) -> str:
    """The 409's detail: the states the driver could ask for now and be granted (API.md), so the state machine's
    transitions less those the actions refuse (going offline with a picked-up delivery, in `take_offline`)."""
    requestable = _requestable(driver)
    if _carries_picked_up(driver):
        requestable = [t for t in requestable if t.target != DriverState.OFFLINE]
        if not requestable:
            return (
                f"A driver who is {driver.state} can go to no other state while carrying a picked-up delivery: "
                "deliver it first."
            )
    allowed = ", ".join(t.target for t in requestable)
    return f"A driver who is {driver.state} can go to: {allowed}."


def _carries_picked_up(driver: Driver) -> bool:
    return Delivery.objects.carried_by(driver).filter(status=DeliveryStatus.PICKED_UP).exists()


def go_online(driver_id, *, actor: Actor) -> None:
    """Online, and busy at once when what the driver still carries fills their capacity: a driver set offline by
    the system (stale) keeps a picked-up delivery, and coming back with it they are not free supply."""
    with atomic_action():
        # The fixed lock order: what the driver carries before the driver (ids in order, so two never cross).
        carried = [lock_delivery(pk) for pk in _picked_up_by(driver_id)]
        driver = lock_driver(driver_id)
        transition_driver(driver.go_online, actor=actor, reason="shift started")
        if active_delivery_count(driver) >= driver.capacity:
            transition_driver(driver.fill_capacity, actor=actor, reason="at capacity")
        start_shift(driver, actor=actor)
        announce_state(driver, reason="online")
        for delivery in carried:
            if delivery.driver_id == driver.pk and delivery.status == DeliveryStatus.PICKED_UP:
                driver_back_locked(delivery, actor=actor)


def _picked_up_by(driver_id) -> list:
    """The driver's picked-up deliveries: the driver going stale or offline with them may have escalated them
    (SPEC 2.3), a cause the driver's return takes away. All of them, not only those escalated already: the sweep
    escalates each after the driver went offline, and one it escalates after this read must wait for the lock."""
    carried = Delivery.objects.filter(driver_id=driver_id, status=DeliveryStatus.PICKED_UP)
    return list(carried.order_by("pk").values_list("pk", flat=True))


class _OfferArrived(DomainError):
    """An offer was made to the driver between reading its pending offer and locking the driver. Retried; only
    if offers kept arriving through every attempt does the app see it (a 409 to answer the offer or ask again)."""

    code = "offer_arrived"
    default_detail = "An offer arrived just now: answer it, or ask again."


# Each retry means dispatch offered the driver a job in that very instant: a second one is already rare.
LEAVING_ATTEMPTS = 3


def _lock_with_pending_offer(driver_id) -> tuple[Driver, Delivery | None, Offer | None]:
    """Lock the driver's pending offer and its delivery before the driver (the fixed lock order). Dispatch makes
    an offer holding the driver's row, so once that is locked no new one can come; one committed after the read
    above is not locked and would be left pending on a driver who left: `_OfferArrived`, to start again."""
    delivery_id = Offer.objects.pending_for_driver(driver_id).values_list("delivery_id", flat=True).first()
    delivery = lock_delivery(delivery_id) if delivery_id else None
    offer = (
        Offer.objects.select_for_update().pending_for_driver(driver_id).filter(delivery=delivery).first()
        if delivery
        else None
    )
    driver = lock_driver(driver_id)
    if offer is None and Offer.objects.pending_for_driver(driver_id).exists():
        raise _OfferArrived()
    return driver, delivery, offer


def _retried_when_an_offer_arrives(action):
    """Run a leaving action again, in a new transaction, when an offer arrived while it locked the driver."""

    @wraps(action)
    def run(driver_id, **kwargs):
        for _ in range(LEAVING_ATTEMPTS - 1):
            try:
                return action(driver_id, **kwargs)
            except _OfferArrived:
                continue
        return action(driver_id, **kwargs)

    return run


@_retried_when_an_offer_arrives
def start_break(driver_id, *, actor: Actor) -> None:
    with atomic_action():
        driver, delivery, offer = _lock_with_pending_offer(driver_id)
        transition_driver(driver.start_break, actor=actor, reason="break")
        Break.objects.create(driver=driver, shift=current_shift(driver))
        announce_state(driver, reason="break")
        if offer is not None:
            withdraw_offer_locked(delivery, offer, reason="driver_on_break", actor=actor)
            dispatch_locked(delivery)


def end_break(driver_id, *, actor: Actor) -> None:
    with atomic_action():
        driver = lock_driver(driver_id)
        transition_driver(driver.end_break, actor=actor, reason="break ended")
        _close_break(driver, actor=actor)
        announce_state(driver, reason="break ended")


def _close_break(driver: Driver, *, actor: Actor) -> None:
    # Locked (after the driver): the sweep below may be flagging this very break.
    open_break = driver.breaks.select_for_update().filter(ended_at__isnull=True).first()
    if open_break is None:
        return
    open_break.ended_at = timezone.now()
    if not open_break.over_limit and open_break.seconds > driver.home_zone.break_limit_s:
        _flag_over_limit(open_break, actor=actor, now=open_break.ended_at)  # ended before the sweep saw it
    open_break.save(update_fields=["ended_at", "over_limit"])


def flag_long_breaks(*, now: datetime | None = None) -> int:
    """Flag every break still running past its zone's limit (SPEC 2.2: a break over the limit is flagged to
    ops), when the limit passes rather than when the break ends. Run by beat; returns how many it flagged."""
    now = now or timezone.now()
    running = Break.objects.filter(ended_at__isnull=True, over_limit=False).select_related("driver__home_zone")
    overdue = [b.pk for b in running if b.started_at < now - timedelta(seconds=b.driver.home_zone.break_limit_s)]
    flagged = 0
    for break_id in overdue:
        with atomic_action():
            open_break = (
                Break.objects.select_for_update(of=("self",)).select_related("driver__home_zone").get(pk=break_id)
            )
            if open_break.ended_at is None and not open_break.over_limit:
                _flag_over_limit(open_break, actor=Actor.system("break-sweep"), now=now)
                open_break.save(update_fields=["over_limit"])
                flagged += 1
    return flagged


def _flag_over_limit(open_break: Break, *, actor: Actor, now: datetime) -> None:
    """Mark a locked break over the limit (the caller saves it), audit it and tell ops live."""
    open_break.over_limit = True
    message = messages.break_over_limit(open_break, now=now)
    record_event(
        "driver.break_over_limit",
        actor=actor,
        subject=open_break.driver,
        driver_id=open_break.driver_id,
        payload={
            "seconds": message["seconds"],
            "limit_s": message["limit_s"],
            "ended": open_break.ended_at is not None,
        },
    )
    push_ops("driver.break_over_limit", message)


def announce_state(driver: Driver, *, reason: str, detail: str = "") -> None:
    """`driver.state` on the driver's stream when it goes online, on or off a break, or offline (busy ⇄
    available follow its own deliveries): the app and the driver's open socket, which decides from it whether
    pings make the driver searchable, always know; a change the driver did not ask for says why."""
    notify_driver(driver.pk, "driver.state", messages.driver_state(driver, reason=reason, detail=detail))


@_retried_when_an_offer_arrives
def take_offline(driver_id, *, actor: Actor, reason: str, detail: str = "") -> None:
    """Set a driver offline. By the driver's own choice it is refused while carrying a picked-up delivery; set
    by the system (stale, missed offers) or ops the driver is told why. A pending offer is withdrawn and passed on;
    deliveries not yet picked up go back to dispatch; picked-up ones escalate."""
    with atomic_action():
        driver, delivery, offer = _lock_with_pending_offer(driver_id)
        if driver.state == DriverState.OFFLINE:
            return
        held = dict(Delivery.objects.carried_by(driver).values_list("pk", "status"))
        if actor.is_driver and DeliveryStatus.PICKED_UP in held.values():
            raise InvalidTransition(_allowed_now(driver))
        transition_driver(driver.go_offline, actor=actor, reason=reason, detail=detail)
        if driver.breaks.filter(ended_at__isnull=True).exists():
            _close_break(driver, actor=actor)
        end_shift(driver, actor=actor)
        if offer is not None:
            withdraw_offer_locked(delivery, offer, reason="driver_offline", actor=actor)
            dispatch_locked(delivery)
        announce_state(driver, reason=reason, detail=detail)
        transaction.on_commit(lambda: locations.remove_from_index(driver))
    # Each held delivery in its own transaction, locked delivery-first like every other action.
    for delivery_id in held:
        reassign_after_driver_loss(delivery_id, driver_id=driver_id, actor=actor, reason=reason)


def take_offline_for_missed_offers(driver_id, *, limit: int, actor: Actor) -> None:
    """The zone's rule (`missed_offers_before_offline`): `limit` offers in a row expired without an answer."""
    detail = f"You were set offline after {limit} offers in a row expired without an answer."
    take_offline(driver_id, actor=actor, reason="missed_offers", detail=detail)


def mark_stale_drivers(*, now: datetime | None = None) -> int:
    """Drivers whose pings stopped for the zone's stale limit (default 90 s) go offline. Returns how many."""
    locations.flush_positions()
    now = now or timezone.now()
    # Going online (the open shift's start) counts as a sign of life: a driver gets the full limit to send its first
    # ping. No other change of state does: a delivery cancelled or a capacity changed is nothing the driver sent.
    # (Every online driver has an open shift; the state's change stands in, so one that had not is still swept.)
    came_online = Shift.objects.open().filter(driver=OuterRef("pk")).values("started_at")[:1]
    online = (
        Driver.objects.exclude(state=DriverState.OFFLINE)
        .select_related("home_zone")
        .annotate(came_online_at=Coalesce(Subquery(came_online), F("state_changed_at")))
    )
    stale = [
        driver.pk
        for driver in online.only("pk", "last_seen_at", "home_zone__stale_after_s")
        if max(filter(None, [driver.last_seen_at, driver.came_online_at]))
        <= now - timedelta(seconds=driver.home_zone.stale_after_s)
    ]
    for driver_id in stale:
        take_offline(
            driver_id,
            actor=Actor.system("stale-sweep"),
            reason="stale",
            detail="No location received for too long: you were set offline.",
        )
    _hand_back_from_offline_drivers()
    _take_offline_after_missed_offers()
    _follow_capacity()
    return len(stale)


def _hand_back_from_offline_drivers() -> None:
    """`take_offline` hands each held delivery back in its own transaction after the driver's: a process that died
    in between left deliveries assigned to an offline driver. Finish its work: back to dispatch. (A picked-up one
    left so is not reassigned anyway; the ladder's overdue rung escalates it.)"""
    left = Delivery.objects.filter(status=DeliveryStatus.ASSIGNED, driver__state=DriverState.OFFLINE)
    for delivery_id, driver_id in left.values_list("pk", "driver_id"):
        reassign_after_driver_loss(
            delivery_id, driver_id=driver_id, actor=Actor.system("stale-sweep"), reason="offline"
        )
    _escalate_carried_by_offline_drivers()


def _escalate_carried_by_offline_drivers() -> None:
    """The same crash after pickup left a picked-up delivery with an offline driver and no escalation: raise it now
    (SPEC 2.3: a driver who went stale while holding a picked-up delivery), not at the ladder's overdue rung, up to
    its ETA and 15 minutes later. Once each time its driver went offline: an escalation ops resolved stays so."""
    escalated = Escalation.objects.filter(
        delivery=OuterRef("pk"),
        reason__in=[Escalation.Reason.DRIVER_STALE, Escalation.Reason.DRIVER_OFFLINE],
        opened_at__gte=OuterRef("driver__state_changed_at"),
    )
    left = Delivery.objects.filter(status=DeliveryStatus.PICKED_UP, driver__state=DriverState.OFFLINE)
    for delivery_id, driver_id in left.exclude(Exists(escalated)).values_list("pk", "driver_id"):
        reassign_after_driver_loss(
            delivery_id, driver_id=driver_id, actor=Actor.system("stale-sweep"), reason=_offline_cause(driver_id)
        )


def _take_offline_after_missed_offers() -> None:
    """An expiry takes the driver offline in a transaction after its own (`expire_offer`), and an offer expired on
    its way to being withdrawn counts the miss without doing so (`withdraw_offer_locked`): a driver whose row of
    misses reached the limit of the last missed offer's zone, and is still online, is taken offline now. Left so,
    they went on being offered jobs they did not answer until one more expired."""
    last_missed = Offer.objects.filter(driver=OuterRef("pk"), status=OfferStatus.EXPIRED, unheard=False).order_by(
        "-sent_at"
    )
    over = (
        Driver.objects.exclude(state=DriverState.OFFLINE)
        .filter(missed_offers_in_row__gt=0)
        .annotate(limit=Subquery(last_missed.values("delivery__zone__missed_offers_before_offline")[:1]))
        .filter(missed_offers_in_row__gte=F("limit"))
    )
    for driver_id, limit in over.values_list("pk", "limit"):
        take_offline_for_missed_offers(driver_id, limit=limit, actor=Actor.system("stale-sweep"))


def _follow_capacity() -> None:
    """A console's capacity change is saved in the form's transaction and the driver's state follows it in the next
    (`apply_capacity`): one that failed between them left a driver busy under a capacity they no longer fill (never
    offered a job) or available at one they fill (offered more than they may carry). Bring those in line now."""
    carried = Delivery.objects.carried_by(OuterRef("pk")).order_by().values("driver").annotate(n=Count("pk"))
    # Only busy and available follow capacity: the deliveries of drivers offline or on a break are not counted.
    working = Driver.objects.filter(state__in=[DriverState.BUSY, DriverState.AVAILABLE])
    out_of_line = working.annotate(carried=Coalesce(Subquery(carried.values("n")), 0)).filter(
        Q(state=DriverState.BUSY, carried__lt=F("capacity"))
        | Q(state=DriverState.AVAILABLE, carried__gte=F("capacity"))
    )
    for driver_id in out_of_line.values_list("pk", flat=True):
        apply_capacity(driver_id, actor=Actor.system("stale-sweep"))


def _offline_cause(driver_id) -> str:
    """Why the driver last went offline, as its availability change recorded it ("stale", "missed_offers", ...)."""
    went_offline = (
        AuditEvent.objects.filter(driver_id=driver_id, type="driver.state_changed", to_state=DriverState.OFFLINE)
        .order_by("-id")
        .first()
    )
    return (went_offline.payload.get("reason") if went_offline else "") or "offline"


def apply_capacity(driver_id, *, actor: Actor) -> None:
    """After ops changed a driver's capacity: busy when what they carry fills the new capacity, available again
    when it no longer does (SPEC 2.2: busy is "at capacity"), audited as every availability change. Dispatch
    offers only to available drivers, so a raised capacity left on busy would never be used."""
    with atomic_action():
        driver = lock_driver(driver_id)
        carried = active_delivery_count(driver)
        if carried < driver.capacity and can_proceed(driver.free_capacity):
            transition_driver(driver.free_capacity, actor=actor, reason="capacity changed")
        elif carried >= driver.capacity and carried and can_proceed(driver.fill_capacity):
            transition_driver(driver.fill_capacity, actor=actor, reason="capacity changed")
        else:
            return
        # Not one of the driver's own deliveries: the app learns of it only from here.
        announce_state(driver, reason="capacity_changed", detail=f"You can now carry {driver.capacity} at once.")
