"""KPI facts read from the raw data (the audit trail and the rows it describes), for one zone or driver on one
local day. Facts are additive (counts, money sums, lists of durations) so days merge exactly; the figures shown
are derived from them in `analytics.kpis`."""

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from core.models import AuditEvent
from deliveries.models import Delivery, DeliveryCost, DeliveryStatus, Escalation, EscalationLevel, Offer, OfferStatus
from deliveries.pricing import idle_pay, money
from drivers.models import Driver, DriverState
from zones.models import Band, Zone, ZoneSnapshot

ONLINE_STATES = (DriverState.AVAILABLE, DriverState.BUSY, DriverState.ON_BREAK)
# Offers answered: accepted, declined or let expire (a withdrawn one never reached an answer).
ANSWERED = (OfferStatus.ACCEPTED, OfferStatus.DECLINED, OfferStatus.EXPIRED)
# A state held longer than this past the end of a day is not looked for (bounds the scan of later events).
LONGEST_STATE = timedelta(days=1)
# The facts a zone-day takes from its minute snapshots: its rollup row keeps them once the snapshots are purged.
SNAPSHOT_FACTS = ("snapshots", "snapshots_by_band", "pressure_sum", "surge_sum")


def day_window(zone: Zone, day: date) -> tuple[datetime, datetime]:
    """The zone's local day as a UTC [start, end). In UTC, not the zone's time: Python subtracts two datetimes
    of one tzinfo as wall-clock times, so a state held all day counted 24 h on the 23 h and 25 h days of a DST
    change."""
    tz = ZoneInfo(zone.time_zone)
    start, end = (datetime.combine(one, time.min, tzinfo=tz).astimezone(UTC) for one in (day, day + timedelta(days=1)))
    return start, end


def local_today(zone: Zone) -> date:
    return timezone.now().astimezone(ZoneInfo(zone.time_zone)).date()


def _seconds(later: datetime, earlier: datetime) -> float:
    return round((later - earlier).total_seconds(), 3)


def _dispatchable(row: dict, first_offered: datetime | None) -> datetime:
    """When a delivery could first be offered: at creation or, held back for `ready_at`, when the hold ended.
    Time to assign counts from here (as the escalation ladder does), so a just-in-time hold is no delay.
    The hold stored is the last one set, which may come after the first assignment (released, then held again
    for a nearer driver) or may have been cut short (ops assigned it during the hold): its first offer, forced
    or not, shows the delivery was being dispatched by then (else time to assign came out negative)."""
    hold = row["dispatch_not_before"]
    start = max(row["created_at"], hold) if hold else row["created_at"]
    return min(start, first_offered) if first_offered else start


def _eta_errors(cohort) -> list[tuple[float, bool]]:
    """(absolute ETA error in seconds, delivered inside the window predicted at assignment) per delivered
    delivery: learned ETAs store the prediction at assignment and the error at delivery."""
    rows = cohort.filter(eta_error_s__isnull=False).values_list(
        "eta_error_s", "finished_at", "eta_window_start_at_assignment", "eta_window_end_at_assignment"
    )
    return [(abs(error), start is not None and start <= done <= end) for error, done, start, end in rows]


def zone_day_facts(zone: Zone, day: date) -> dict:
    start, end = day_window(zone, day)
    cohort = Delivery.objects.filter(zone=zone, created_at__gte=start, created_at__lt=end)
    columns = ("pk", "status", "created_at", "finished_at", "dispatch_not_before")
    created = {row["pk"]: row for row in cohort.values(*columns)}
    status_counts = Counter(row["status"] for row in created.values())
    events = AuditEvent.objects.filter(delivery_id__in=cohort.values("pk"))

    first_offer: dict = {}
    offers = 0
    outcomes: Counter = Counter()
    decline_reasons: Counter = Counter()
    # Offers drivers were asked: a forced assignment (ops, without asking) is recorded as an accepted offer, yet
    # nobody answered it, so it would inflate acceptance and first-offer success (SPEC 5).
    cohort_offers = Offer.objects.asked().filter(delivery__in=cohort.values("pk")).order_by("sent_at")
    for row in cohort_offers.values("delivery_id", "status", "decline_reason"):
        offers += 1
        outcomes[row["status"]] += 1
        if row["status"] == OfferStatus.DECLINED:
            decline_reasons[row["decline_reason"]] += 1
        first_offer.setdefault(row["delivery_id"], row["status"])
    assigned = events.filter(type="delivery.assigned").values("delivery_id").annotate(first=Min("occurred_at"))
    first_offered = dict(
        Offer.objects.filter(delivery__in=cohort.values("pk"))
        .order_by()
        .values("delivery_id")
        .annotate(first=Min("sent_at"))
        .values_list("delivery_id", "first")
    )
    handed_back = events.filter(type="delivery.pending", from_state=DeliveryStatus.ASSIGNED)
    # How many times a delivery reached each level: WARN is recorded on the delivery, ALERT and CRITICAL by
    # the escalation that opened or was raised to them.
    levels = Counter({str(EscalationLevel.WARN.value): events.filter(type="escalation.warned").count()})
    for payload in events.filter(type__in=["escalation.opened", "escalation.raised"]).values_list("payload", flat=True):
        levels[str(payload["level"])] += 1
    costs = DeliveryCost.objects.filter(delivery__in=cohort.values("pk")).aggregate(
        pay=Sum("driver_pay"), fee=Sum("fee"), surge=Sum("pay_surge")
    )
    idle_seconds = sum(
        seconds.get(DriverState.AVAILABLE, 0.0)
        for seconds in state_seconds(Driver.objects.filter(home_zone=zone), start, end).values()
    )
    escalations = Escalation.objects.filter(delivery__zone=zone, opened_at__gte=start, opened_at__lt=end)
    snapshots = ZoneSnapshot.objects.filter(zone=zone, taken_at__gte=start, taken_at__lt=end)
    bands = Counter(snapshots.values_list("band", flat=True))
    pressure = snapshots.aggregate(pressure=Sum("pressure"), surge=Sum("surge_multiplier"))
    eta_errors = _eta_errors(cohort)
    return {
        "deliveries": len(created),
        "delivered": status_counts[DeliveryStatus.DELIVERED],
        "failed": status_counts[DeliveryStatus.FAILED],
        "cancelled": status_counts[DeliveryStatus.CANCELLED],
        "offers": offers,
        "offers_accepted": outcomes[OfferStatus.ACCEPTED],
        "offers_answered": sum(outcomes[status] for status in ANSWERED),
        "decline_reasons": dict(decline_reasons),
        "offered_deliveries": len(first_offer),
        "first_offer_accepted": sum(1 for status in first_offer.values() if status == OfferStatus.ACCEPTED),
        "time_to_assign_s": [
            _seconds(row["first"], _dispatchable(created[row["delivery_id"]], first_offered.get(row["delivery_id"])))
            for row in assigned
        ],
        "reassignments": handed_back.count(),
        "manual_reassignments": handed_back.filter(actor_kind=AuditEvent.ActorKind.OPS).count(),
        "escalations_by_level": {str(level.value): levels[str(level.value)] for level in EscalationLevel if level},
        "delivery_time_s": [
            _seconds(row["finished_at"], row["created_at"])
            for row in created.values()
            if row["status"] == DeliveryStatus.DELIVERED
        ],
        "eta_error_s": [round(error, 3) for error, _ in eta_errors],
        "eta_in_window": sum(1 for _, inside in eta_errors if inside),
        "driver_pay": str(money(costs["pay"] or 0)),
        "fees": str(money(costs["fee"] or 0)),
        # Surge comes from the accepted offers' multiplier (zone balancing sets it; 1.00 until then).
        "surge_pay": str(money(costs["surge"] or 0)),
        "idle_pay": str(idle_pay(zone, seconds=idle_seconds)),
        # Zone balancing's minute snapshots (SPEC 4.2): how often the zone was in each band, and its pressure.
        "snapshots": sum(bands.values()),
        "snapshots_by_band": {band: bands[band] for band in Band.values},
        "pressure_sum": round(pressure["pressure"] or 0.0, 3),
        "surge_sum": str(pressure["surge"] or Decimal("0.00")),
        "time_to_acknowledge_s": [
            _seconds(acknowledged, opened)
            for opened, acknowledged in escalations.filter(acknowledged_at__isnull=False).values_list(
                "opened_at", "acknowledged_at"
            )
        ],
    }


def drivers_day_facts(drivers: list[Driver], day: date) -> dict:
    """{driver id: facts} of one local day, for drivers of one home zone (its day's window), in a handful of
    queries however many drivers: one per driver and figure made a dashboard of 200 drivers 2,000 queries."""
    zone = drivers[0].home_zone
    start, end = day_window(zone, day)
    ids = [driver.pk for driver in drivers]
    offers = defaultdict(list)
    for row in (
        Offer.objects.asked()
        .filter(driver__in=ids, sent_at__gte=start, sent_at__lt=end)
        .values_list("driver_id", "status", "decline_reason", "sent_at", "responded_at")
    ):
        offers[row[0]].append(row[1:])
    in_day = AuditEvent.objects.filter(occurred_at__gte=start, occurred_at__lt=end)
    releases = Counter(
        in_day.filter(
            type="delivery.pending",
            from_state=DeliveryStatus.ASSIGNED,
            actor_kind=AuditEvent.ActorKind.DRIVER,
            actor_id__in=[str(pk) for pk in ids],
        ).values_list("actor_id", flat=True)
    )
    went_offline = in_day.filter(type="driver.state_changed", driver_id__in=ids, to_state=DriverState.OFFLINE)
    offline_events, stale_events = Counter(), Counter()
    for driver_id, payload in went_offline.values_list("driver_id", "payload"):
        offline_events[driver_id] += 1
        stale_events[driver_id] += payload.get("reason") == "stale"
    seconds_by_driver = state_seconds(Driver.objects.filter(pk__in=ids), start, end)
    jobs = {
        row["driver_id"]: row
        for row in DeliveryCost.objects.filter(driver__in=ids, ended_at__gte=start, ended_at__lt=end)
        .values("driver_id")
        .annotate(completed=Count("pk", filter=Q(outcome=DeliveryStatus.DELIVERED)), pay=Sum("driver_pay"))
        .order_by()
    }
    return {
        driver.pk: _driver_facts(
            driver,
            zone,
            offers[driver.pk],
            seconds_by_driver.get(driver.pk, {}),
            known=(min(end, timezone.now()) - max(start, driver.user.date_joined)).total_seconds(),
            releases=releases[str(driver.pk)],
            offline_events=offline_events[driver.pk],
            stale_events=stale_events[driver.pk],
            jobs=jobs.get(driver.pk, {}),
        )
        for driver in drivers
    }


def _driver_facts(driver, zone, offers, seconds, *, known, releases, offline_events, stale_events, jobs) -> dict:
    outcomes = Counter(status for status, *_ in offers)
    answered = (OfferStatus.ACCEPTED, OfferStatus.DECLINED)
    # Offline is the rest of the day so far, from when the driver's account exists: no event marks its hours.
    offline = max(0.0, known - sum(seconds.values()))
    return {
        "offers_received": sum(outcomes.values()),
        "accepted": outcomes[OfferStatus.ACCEPTED],
        "declined": outcomes[OfferStatus.DECLINED],
        "expired": outcomes[OfferStatus.EXPIRED],
        "decline_reasons": dict(Counter(reason for status, reason, *_ in offers if status == OfferStatus.DECLINED)),
        "response_s": [
            _seconds(responded, sent)
            for status, _, sent, responded in offers
            if status in answered and responded is not None
        ],
        "releases": releases,
        "offline_events": offline_events,
        "stale_events": stale_events,
        "seconds_available": round(seconds.get(DriverState.AVAILABLE, 0.0), 3),
        "seconds_busy": round(seconds.get(DriverState.BUSY, 0.0), 3),
        "seconds_on_break": round(seconds.get(DriverState.ON_BREAK, 0.0), 3),
        "seconds_offline": round(offline, 3),
        "deliveries_completed": jobs.get("completed", 0),
        "delivery_pay": str(money(jobs.get("pay") or 0)),
        "idle_pay": str(idle_pay(zone, seconds=seconds.get(DriverState.AVAILABLE, 0.0))),
    }


def state_seconds(drivers, start: datetime, end: datetime) -> dict:
    """Seconds each driver spent in each online state within [start, end), from the `driver.state_changed`
    events (each records the time spent in the state it leaves) and the state held now."""
    totals: dict = defaultdict(lambda: defaultdict(float))

    def add(driver_id, state: str, begin: datetime, finish: datetime) -> None:
        overlap = (min(finish, end) - max(begin, start)).total_seconds()
        if state in ONLINE_STATES and overlap > 0:
            totals[driver_id][state] += overlap

    changes = AuditEvent.objects.filter(
        type="driver.state_changed",
        driver_id__in=drivers.values("pk"),
        occurred_at__gte=start,
        occurred_at__lt=end + LONGEST_STATE,
    ).values_list("driver_id", "from_state", "occurred_at", "payload")
    for driver_id, state, at, payload in changes:
        add(driver_id, state, at - timedelta(seconds=payload.get("seconds_in_previous", 0)), at)
    now = timezone.now()
    for driver_id, state, since in drivers.filter(state_changed_at__lt=end).values_list(
        "pk", "state", "state_changed_at"
    ):
        add(driver_id, state, since, now)
    return totals
