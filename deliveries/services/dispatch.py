"""Choosing the driver to offer a delivery to (SPEC 2.1), with the reasoning recorded (SPEC 3.2)."""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple
from uuid import UUID

from django.db.models import CharField, Count, DateTimeField, Exists, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from core import compiled, rows
from core.audit import Actor, atomic_action, record_event
from core.compiled import CompiledRead
from core.queue import enqueue_on_commit
from deliveries import eta, messages, metrics
from deliveries.models import Delivery, DeliveryStatus, Escalation, EscalationLevel, Offer, OfferStatus
from deliveries.pricing import driver_pay
from deliveries.services.common import lock_delivery, transition_delivery
from deliveries.services.escalations import raise_escalation_locked
from drivers.locations import nearest_drivers
from drivers.models import Driver, DriverState, Shift, Vehicle
from drivers.notifications import notify_driver
from drivers.services import lock_driver
from zones.models import Band
from zones.selectors import band_in_force, bands_in_force, surge_in_force

log = logging.getLogger(__name__)
CANDIDATE_POOL = 50
FRESH_LOCATION_S = 60
NEAR_TIE_S = 60
JUST_IN_TIME_MARGIN = timedelta(minutes=2)
SYSTEM = Actor.system("dispatcher")
# Why ops' "reassign" withdraws a pending offer: its driver is then the previous driver, not offered it again.
REASSIGNED_BY_OPS = "reassigned_by_ops"


class Outcome(StrEnum):
    """What one dispatch attempt did. The first three are also kept on the delivery (`dispatch_outcome`)."""

    OFFERED = "offered"
    HELD = "held"  # just in time: not offered before `hold_until`, for `ready_at`
    NO_CANDIDATE = "no_candidate"  # nobody can take it now; the sweep retries (not past the reassignment limit)
    NOT_PENDING = "not_pending"  # offered, assigned or finished already: nothing to dispatch
    REASSIGNED_TOO_OFTEN = "reassigned_too_often"  # past the zone's limit: ops decide, not dispatch (SPEC 3.1)


@dataclass(frozen=True)
class DispatchResult:
    outcome: Outcome
    delivery: Delivery  # the locked row, as the attempt left it
    offer: Offer | None = None
    hold_until: datetime | None = None

    @property
    def offered(self) -> bool:
        return self.offer is not None


class CandidateRow(NamedTuple):
    """A driver the reasoning names, with everything that can exclude them (one row of `_reasoning_rows`; for one
    the location search did not find, only `last_seen_at` is read)."""

    pk: UUID
    name: str
    vehicle: str
    state: str
    capacity: int
    state_changed_at: datetime
    active_count: int
    has_pending_offer: bool
    previous_offer: str | None
    shift_end: datetime | None
    last_seen_at: datetime | None
    last_finished_at: datetime | None  # when a delivery they carried last ended (delivered, failed, cancelled)


@dataclass
class Candidate:
    driver: Driver | CandidateRow  # what is read of the driver: pk, name, vehicle, state_changed_at (active_count)
    distance_km: float
    eta_to_pickup_s: int

    @property
    def carrying(self) -> int:
        """Deliveries the driver already carries (a driver with room for more stays available)."""
        return getattr(self.driver, "active_count", 0)

    @property
    def idle_since(self) -> datetime | None:
        """Since when the driver has waited for work: None while they carry a delivery (they are not idle); else
        since they became available or, later, since their last delivery ended: a driver with room for several
        stays available while carrying, so their state's time alone would count the hours they worked."""
        if self.carrying:
            return None
        changed, finished = self.driver.state_changed_at, getattr(self.driver, "last_finished_at", None)
        return max(changed, finished) if finished else changed

    def tie_break(self) -> tuple:
        """Among near-ties: idle drivers first, the one idle longest first."""
        idle_since = self.idle_since
        return (idle_since is None, idle_since or datetime.max.replace(tzinfo=UTC))

    def describe(self) -> dict:
        idle_since = self.idle_since
        return {
            "driver_id": str(self.driver.pk),
            "name": self.driver.name,
            "distance_km": round(self.distance_km, 3),
            "eta_to_pickup_s": self.eta_to_pickup_s,
            "score": self.eta_to_pickup_s,
            "idle_since": idle_since.isoformat() if idle_since else None,
            "carrying": self.carrying,
        }


class SearchReason(StrEnum):
    """Why the search covers the zones it does (recorded in the dispatch reasoning)."""

    OWN_ZONE = "own_zone"
    ESCALATED = "escalated"  # from EscalationLevel.WARN: wider radius, every active neighbour
    ZONE_CRITICAL = "zone_critical"  # the zone's band in force is critical: its calm neighbours too, at level 0


@dataclass(frozen=True)
class SearchArea:
    radius_km: float
    zones: list[str]
    reason: SearchReason
    detail: str = ""
    surge: Decimal | None = None  # the zone's surge in force, when the search read its band (then not read again)


@dataclass
class Decision:
    candidates: list[Candidate]
    excluded: list[dict]
    area: SearchArea
    speeds: eta.Speeds  # the learned speeds the ETAs were ranked with

    @property
    def radius_km(self) -> float:
        return self.area.radius_km

    @property
    def zones(self) -> list[str]:
        return self.area.zones

    def reasoning(self, chosen: Candidate | None) -> dict:
        return {
            "chosen": chosen.describe() if chosen else None,
            "candidates": [c.describe() for c in self.candidates],
            "excluded": self.excluded,
            "radius_km": round(self.radius_km, 3),
            "zones": self.zones,
            "search": {"reason": self.area.reason, "detail": self.area.detail},
        }


def search_area(delivery: Delivery, *, now: datetime) -> SearchArea:
    """Radius and zones to search: the zone's own; widened ×1.5 with every neighbour from EscalationLevel.WARN;
    at level 0 with the calm (normal) neighbours when the zone's band in force is critical (SPEC 4.2)."""
    zone = delivery.zone
    if delivery.escalation_level >= EscalationLevel.WARN:
        neighbours = sorted(zone.neighbours.filter(active=True).values_list("code", flat=True))
        factor = zone.escalation_radius_factor
        detail = f"escalation level {delivery.escalation_level}: radius ×{factor:g}, all neighbours"
        return SearchArea(zone.search_radius_km * factor, [zone.code, *neighbours], SearchReason.ESCALATED, detail)
    own = band_in_force(zone, now=now)
    surge = zone.surge_for(own.band if own else Band.NORMAL)
    if own is None or own.band != Band.CRITICAL:
        return SearchArea(zone.search_radius_km, [zone.code], SearchReason.OWN_ZONE, surge=surge)
    neighbours = list(zone.neighbours.filter(active=True).order_by("code"))
    bands = bands_in_force([n.pk for n in neighbours], now=now)
    calm = [n.code for n in neighbours if n.pk not in bands or bands[n.pk].band == Band.NORMAL]
    detail = f"{zone.name} is critical (pressure {own.pressure:g}): "
    detail += f"calm neighbours searched too ({', '.join(calm) or 'none'})"
    return SearchArea(zone.search_radius_km, [zone.code, *calm], SearchReason.ZONE_CRITICAL, detail, surge)


def rank_candidates(delivery: Delivery, *, now: datetime) -> Decision:
    area = search_area(delivery, now=now)
    radius_km, zone_codes = area.radius_km, area.zones
    nearby = nearest_drivers(
        delivery.pickup_lat,
        delivery.pickup_lng,
        radius_km=radius_km,
        limit=CANDIDATE_POOL,
        max_age_s=FRESH_LOCATION_S,
        zone_codes=zone_codes,
        now=now,
    )
    ids = [hit.driver_id for hit in nearby]
    found, drivers, out_of_reach = set(ids), {}, []
    for row in _reasoning_rows(delivery, ids, zone_codes):
        if (pk := str(row.pk)) in found:
            drivers[pk] = row
        else:
            out_of_reach.append(row)
    candidates, excluded, speeds = [], [], eta.Speeds(delivery.zone, now)
    for hit in nearby:
        driver = drivers.get(hit.driver_id)
        if driver is None:
            continue
        to_pickup = speeds.seconds(hit.distance_km, driver.vehicle)
        job_s = to_pickup + eta.PICKUP_SERVICE_S + speeds.seconds(delivery.distance_km, driver.vehicle)
        job_s += eta.DROPOFF_SERVICE_S
        reason = None
        if driver.state != DriverState.AVAILABLE:
            reason = driver.state
        elif driver.active_count >= driver.capacity:
            reason = "at_capacity"
        elif driver.has_pending_offer:
            reason = "has_pending_offer"
        elif driver.previous_offer:
            previous = {OfferStatus.ACCEPTED: "previous_driver", OfferStatus.WITHDRAWN: "previous_driver"}
            reason = previous.get(driver.previous_offer, driver.previous_offer)
        elif driver.shift_end is not None and now + timedelta(seconds=job_s) > driver.shift_end:
            reason = "shift_ending"
        if reason:
            excluded.append(
                {
                    "driver_id": hit.driver_id,
                    "name": driver.name,
                    "reason": reason,
                    "distance_km": round(hit.distance_km, 3),
                }
            )
        else:
            candidates.append(Candidate(driver, hit.distance_km, to_pickup))
    excluded.extend(_out_of_reach(out_of_reach, now=now))
    candidates.sort(key=lambda c: (c.eta_to_pickup_s, *c.tie_break()))
    return Decision(candidates, excluded, area, speeds)


def _reasoning_query(delivery_id, ids, zone_codes):
    """Everyone the reasoning names, in ONE query: the drivers the location search found, with everything that can
    exclude them (carried deliveries against capacity, a pending offer, how this delivery's earlier offer to them
    ended, the end of their open shift; annotated rather than filtered out, since the reasoning records why each
    one was excluded), and up to OUT_OF_REACH_LISTED available drivers of the searched zones it did not find, with
    their last location's time (stale or too far). The two parts are a UNION ALL of the same columns (an OR of
    the two would make PostgreSQL scan every driver)."""
    found = Driver.objects.filter(pk__any=ids)
    # The first found, unsorted: sorted (by name, the model's order) PostgreSQL read and sorted every available
    # driver of the zones for each dispatch, ~2.8 ms at 3,300 a zone and growing with the fleet (issue 12).
    available = Driver.objects.filter(state=DriverState.AVAILABLE, current_zone__code__any=zone_codes)
    not_found = available.exclude(pk__any=ids).order_by().values("pk")[:OUT_OF_REACH_LISTED]
    # Out of reach is the reason given for those: what else could exclude them is not looked up.
    out_of_reach = Driver.objects.filter(pk__in=not_found).annotate(
        active_count=Value(0),
        has_pending_offer=Value(False),
        previous_offer=Value(None, output_field=CharField()),
        shift_end=Value(None, output_field=DateTimeField()),
        last_finished_at=Value(None, output_field=DateTimeField()),
    )
    return _with_exclusions(found, delivery_id).union(_columns(out_of_reach), all=True)


def _with_exclusions(drivers, delivery_id):
    # A withdrawn offer leaves its driver eligible (a break, going offline), unless ops withdrew it to reassign
    # the delivery away from them: pressing "reassign" must not offer it straight back to the same driver.
    withdrawn_otherwise = Q(status=OfferStatus.WITHDRAWN) & ~Q(withdraw_reason=REASSIGNED_BY_OPS)
    earlier_offers = (
        Offer.objects.filter(delivery_id=delivery_id, driver=OuterRef("pk"))
        .exclude(status=OfferStatus.PENDING)
        .exclude(withdrawn_otherwise)
        .order_by("-sent_at")
    )
    open_shift = Shift.objects.open().filter(driver=OuterRef("pk"), planned_end__isnull=False)
    finished = Delivery.objects.filter(driver=OuterRef("pk"), finished_at__isnull=False).order_by("-finished_at")
    # Counted per driver from the index of carried deliveries: a join of the drivers' deliveries, as an aggregate
    # over the relation, read every delivery they ever had (a scan of the whole table once it is large).
    carried = Delivery.objects.carried_by(OuterRef("pk")).order_by().values("driver").annotate(n=Count("pk"))
    return _columns(
        drivers.annotate(
            active_count=Coalesce(Subquery(carried.values("n")), 0),
            has_pending_offer=Exists(Offer.objects.pending_for_driver(OuterRef("pk"))),
            previous_offer=Subquery(earlier_offers.values("status")[:1]),
            shift_end=Subquery(open_shift.values("planned_end")[:1]),
            last_finished_at=Subquery(finished.values("finished_at")[:1]),
        )
    )


def _columns(drivers):
    return drivers.order_by().values_list(*CandidateRow._fields)


OUT_OF_REACH_LISTED = 20

# Compiled once (on SQLite once per power of two of drivers found and of zones searched): compiling was most of its
# CPU.
_reasoning_read = CompiledRead(Driver, _reasoning_query, (compiled.UUID, [compiled.UUID], [compiled.TEXT]))


def _reasoning_rows(delivery: Delivery, ids: list[str], zone_codes: list[str]) -> list[CandidateRow]:
    return [CandidateRow._make(row) for row in _reasoning_read(delivery.pk, ids, zone_codes)]


def _out_of_reach(rows: list[CandidateRow], *, now: datetime) -> list[dict]:
    """Available drivers of the searched zones the location search did not return: stale or too far."""
    fresh_after = now - timedelta(seconds=FRESH_LOCATION_S)
    return [
        {
            "driver_id": str(row.pk),
            "name": row.name,
            "reason": "stale_location" if row.last_seen_at is None or row.last_seen_at < fresh_after else "too_far",
        }
        for row in rows
    ]


def choose(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates in the order to try: lowest ETA to pickup; among near-ties (within 60 s of the best) the
    driver idle longest first (one already carrying a delivery is not idle: after every idle one)."""
    if not candidates:
        return []
    best = candidates[0].eta_to_pickup_s
    near = sorted((c for c in candidates if c.eta_to_pickup_s <= best + NEAR_TIE_S), key=Candidate.tie_break)
    rest = [c for c in candidates if c.eta_to_pickup_s > best + NEAR_TIE_S]
    return near + rest


def dispatch(delivery_id, *, actor: Actor = SYSTEM) -> DispatchResult:
    with atomic_action():
        return dispatch_locked(lock_delivery(delivery_id), actor=actor)


@metrics.DISPATCH_DURATION.time()
def dispatch_locked(delivery: Delivery, *, actor: Actor = SYSTEM) -> DispatchResult:
    """Offer a locked pending delivery to the best candidate, or say why not.

    No candidate at all is a level-2 cause (SPEC 2.3): the search widens at once rather than at the ladder's
    2-minute rung and, if still nobody, ops are alerted then (with who was excluded and why), not at 5 minutes.

    A delivery reassigned more often than its zone allows is escalated to ops and no longer dispatched
    automatically; ops asking for it (reassign, re-run dispatch) override that limit (SPEC 3.1)."""
    if delivery.status != DeliveryStatus.PENDING:
        return DispatchResult(Outcome.NOT_PENDING, delivery)
    if delivery.reassignment_count > delivery.zone.max_reassignments and not actor.is_ops:
        return DispatchResult(Outcome.REASSIGNED_TOO_OFTEN, delivery)
    now = timezone.now()
    decision = rank_candidates(delivery, now=now)
    if delivery.escalation_level < EscalationLevel.WARN and _no_candidate_at_all(delivery, decision, now):
        raise_escalation_locked(
            delivery,
            level=EscalationLevel.WARN,
            reason=Escalation.Reason.NO_CANDIDATE,
            detail="No driver in reach: search widened to neighbouring zones",
            actor=actor,
        )
        decision = rank_candidates(delivery, now=now)
    if hold_until := _held(delivery, decision, now):
        _note_outcome(delivery, Outcome.HELD, actor, {"until": hold_until.isoformat()} | decision.reasoning(None))
        delivery.dispatch_not_before = hold_until
        delivery.save(update_fields=["dispatch_not_before", "dispatch_outcome"])
        return DispatchResult(Outcome.HELD, delivery, hold_until=hold_until)
    for candidate in choose(decision.candidates):
        offer = _offer_to(delivery, candidate, decision, actor=actor)
        if offer is not None:
            return DispatchResult(Outcome.OFFERED, delivery, offer=offer)
    _note_outcome(delivery, Outcome.NO_CANDIDATE, actor, decision.reasoning(None))
    delivery.save(update_fields=["dispatch_outcome"])
    if delivery.escalation_level < EscalationLevel.ALERT and _no_candidate_at_all(delivery, decision, now):
        raise_escalation_locked(
            delivery,
            level=EscalationLevel.ALERT,
            reason=Escalation.Reason.NO_CANDIDATE,
            detail=_nobody_in_reach(decision),
            actor=actor,
        )
    return DispatchResult(Outcome.NO_CANDIDATE, delivery)


def _no_candidate_at_all(delivery: Delivery, decision: Decision, now: datetime) -> bool:
    """Nobody eligible, and nobody asked since it last needed a driver (a driver in reach who declined or let
    an offer expire leaves it to the clock and the offer-round count), and it is due now."""
    return (
        not decision.candidates and not _held(delivery, decision, now) and not Offer.objects.rounds(delivery).exists()
    )


def _held(delivery: Delivery, decision: Decision, now: datetime) -> datetime | None:
    """Until when to hold the delivery back, just in time for `ready_at`: the first driver to ask arrives as the
    food is ready; with nobody in reach yet, no earlier than a driver at the edge of the search would set off.
    None when it is time to offer it."""
    if delivery.ready_at is None:
        return None
    if decision.candidates:
        to_pickup_s = choose(decision.candidates)[0].eta_to_pickup_s
    else:
        to_pickup_s = max(decision.speeds.seconds(decision.radius_km, vehicle) for vehicle in Vehicle.values)
    hold_until = delivery.ready_at - timedelta(seconds=to_pickup_s) - JUST_IN_TIME_MARGIN
    return hold_until if now < hold_until else None


def _nobody_in_reach(decision: Decision) -> str:
    excluded = ", ".join(f"{e['name']} ({e['reason'].replace('_', ' ')})" for e in decision.excluded) or "nobody"
    detail = f"No driver in reach within {decision.radius_km:.1f} km of pickup ({', '.join(decision.zones)}); "
    detail += f"excluded: {excluded}"
    return detail if len(detail) <= 300 else detail[:299] + "…"


def _note_outcome(delivery: Delivery, outcome: Outcome, actor: Actor, payload: dict) -> None:
    """Record a dispatch that offered nothing, once per change of outcome (the sweep retries every few seconds)."""
    if delivery.dispatch_outcome != outcome:
        record_event(f"dispatch.{outcome}", actor=actor, subject=delivery, delivery_id=delivery.pk, payload=payload)
    delivery.dispatch_outcome = outcome


def _offer_to(delivery: Delivery, candidate: Candidate, decision: Decision, *, actor: Actor) -> Offer | None:
    # Lock the driver (delivery, then offer, then driver) and check again: it may have changed since the search.
    driver = lock_driver(candidate.driver.pk)
    if driver.state != DriverState.AVAILABLE:
        return None
    offer = new_offer(
        delivery,
        driver,
        candidate=candidate,
        kind=Offer.Kind.DISPATCH,
        speeds=decision.speeds,
        surge=decision.area.surge,
    )
    if not rows.insert_unless_taken(offer):
        return None  # another delivery's dispatch offered this driver first (one pending offer per driver)
    record_event(
        "dispatch.decided",
        actor=actor,
        subject=delivery,
        delivery_id=delivery.pk,
        driver_id=driver.pk,
        payload=decision.reasoning(candidate) | {"offer_id": str(offer.pk)},
    )
    announce_offer_locked(delivery, offer, actor=actor)
    return offer


def new_offer(
    delivery: Delivery,
    driver: Driver,
    *,
    candidate: Candidate,
    kind: str,
    speeds: eta.Speeds,
    surge: Decimal | None = None,
) -> Offer:
    """The offer, not saved yet, sent at `speeds.at`, its minutes at the learned `speeds` the candidate's ETA came
    from, its pay at `surge` (the zone's surge in force, read here unless the caller has it)."""
    zone, now = delivery.zone, speeds.at
    minutes = (candidate.eta_to_pickup_s + speeds.seconds(delivery.distance_km, driver.vehicle)) / 60
    if surge is None:
        surge = surge_in_force(zone, now=now)
    return Offer(
        delivery=delivery,
        driver=driver,
        kind=kind,
        sent_at=now,
        expires_at=now + timedelta(seconds=zone.offer_timeout_s),
        distance_km=round(candidate.distance_km, 3),
        eta_to_pickup_s=candidate.eta_to_pickup_s,
        estimated_pay=driver_pay(
            zone, distance_km=candidate.distance_km + delivery.distance_km, minutes=minutes, surge=surge
        ),
        surge_multiplier=surge,
    )


def announce_offer_locked(delivery: Delivery, offer: Offer, *, actor: Actor) -> None:
    """Move the delivery to `offered`, audit the offer, push it to the driver and schedule its expiry."""
    # Every offer is announced here, which sets the outcome "offered": a delivery that never had one is offered
    # for the first time, one that had one is not, and only after a hold or an empty search must we ask.
    previous_outcome = delivery.dispatch_outcome
    # The driver's message first: pushes go out after commit in the order they were made, and the driver, whose
    # deadline is running, is waiting for this one (the customer's `status` and the webhook follow).
    notify_driver(
        offer.driver_id, "offer.created", messages.offer_created(offer), unsent=lambda: offer_unheard(offer.pk)
    )
    transition_delivery(
        delivery.mark_offered,
        actor=actor,
        payload={"offer_id": str(offer.pk)},
        setting={"dispatch_outcome": Outcome.OFFERED},
    )
    record_event(
        "offer.created",
        actor=actor,
        subject=offer,
        delivery_id=delivery.pk,
        driver_id=offer.driver_id,
        to_state=offer.status,
        payload={
            "kind": offer.kind,
            "expires_at": offer.expires_at.isoformat(),
            "distance_km": offer.distance_km,
            "eta_to_pickup_s": offer.eta_to_pickup_s,
            "estimated_pay": str(offer.estimated_pay),
            "surge_multiplier": str(offer.surge_multiplier),
        },
    )
    metrics.OFFERS.labels(outcome="created").inc()
    if previous_outcome != Outcome.OFFERED:
        metrics.observe_first_offer(delivery, offer, surely_first=not previous_outcome)
    from deliveries.tasks import expire_offer_task

    enqueue_on_commit(expire_offer_task, str(offer.pk), eta=offer.expires_at)


def offer_unheard(offer_id) -> None:
    """The push of the offer failed (the channel layer is down): the app hears it only by asking
    (`GET /driver/offers`) or after its socket reconnects and resumes, so its expiry is not counted as the driver's
    miss. Nothing is written if the offer was answered meanwhile."""
    if Offer.objects.filter(pk=offer_id, status=OfferStatus.PENDING).update(unheard=True):
        log.warning("offer %s could not be pushed to its driver; its expiry will not count as a miss", offer_id)
