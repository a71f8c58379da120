"""What a replay needs of a recorded day, read from the database into plain data (JSON): the zones with their
policy, the deliveries merchants sent, and each driver's shift pattern and ways of answering offers.

What is recorded is what does not depend on the policy: when deliveries came in and where, when drivers went
online, on a break and home, how fast and how often each answered, and which deliveries merchants cancelled. What
follows from the policy (who was offered what, escalations, drivers set offline for missed offers) is left for the
replay to decide."""

from collections import defaultdict
from datetime import date, datetime

from django.core import serializers
from django.db.models import Min, Q

from analytics.facts import day_window
from core.models import AuditEvent
from deliveries.models import Delivery, DeliveryStatus, Offer, OfferStatus, TravelSpeed
from drivers.models import Driver, DriverState
from zones.models import Zone

# Changes of a driver's availability that were the driver's own choice, or their phone going quiet: the rest
# (busy at capacity, offline for missed offers, ops' hand) are the replay's own to decide.
_DRIVERS_OWN = {"driver"}
_PHONE_LOST = "stale"


class NothingRecorded(Exception):
    """The day has no deliveries in the zones asked for."""


def record_day(day: date, zone_codes: list[str] | None = None) -> dict:
    zones = Zone.objects.filter(active=True) if not zone_codes else Zone.objects.filter(code__in=zone_codes)
    zones = list(zones)
    missing = set(zone_codes or []) - {zone.code for zone in zones}
    if missing:
        raise NothingRecorded(f"no zone {', '.join(sorted(missing))}")
    windows = {zone.pk: day_window(zone, day) for zone in zones}
    start, end = min(w[0] for w in windows.values()), max(w[1] for w in windows.values())
    deliveries = [row for zone in zones for row in _deliveries(zone, *windows[zone.pk])]
    if not deliveries:
        raise NothingRecorded(f"no deliveries on {day} in {', '.join(zone.code for zone in zones)}")
    deliveries.sort(key=lambda row: row["at"])
    # The zones' own drivers, and any other who was offered one of their deliveries that day (a neighbour's).
    offered_here = Q(offers__delivery__zone__in=zones, offers__sent_at__gte=start, offers__sent_at__lt=end)
    drivers = Driver.objects.filter(Q(home_zone__in=zones) | offered_here).distinct()
    drivers = drivers.select_related("home_zone").order_by("pk")
    everything = Zone.objects.all()  # neighbours too: a widened search reaches them
    return {
        "day": day.isoformat(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "zones": [zone.code for zone in zones],
        "zone_rows": serializers.serialize("json", everything),
        "speed_rows": serializers.serialize("json", TravelSpeed.objects.filter(zone__in=everything)),
        "deliveries": deliveries,
        "drivers": [shape for driver in drivers if (shape := _driver(driver, start, end))],
    }


def _deliveries(zone: Zone, start: datetime, end: datetime) -> list[dict]:
    rows = Delivery.objects.filter(zone=zone, created_at__gte=start, created_at__lt=end)
    cancelled = dict(
        AuditEvent.objects.filter(
            delivery_id__in=rows.values("pk"), to_state=DeliveryStatus.CANCELLED, actor_kind="merchant"
        ).values_list("delivery_id", "occurred_at")
    )
    shaped = []
    for delivery in rows.order_by("created_at"):
        made = delivery.created_at
        cancel = cancelled.get(delivery.pk)
        shaped.append(
            {
                "at": made.isoformat(),
                "zone": zone.code,
                "pickup": _place("Pickup", delivery.pickup_lat, delivery.pickup_lng),
                "dropoff": _place("Dropoff", delivery.dropoff_lat, delivery.dropoff_lng),
                "ready_in_s": _after(delivery.ready_at, made),
                "promised_in_s": _after(delivery.promised_by, made),
                "value": str(delivery.value) if delivery.value is not None else None,
                "cancelled_after_s": _after(cancel, made),
            }
        )
    return shaped


def _place(label: str, lat: float, lng: float) -> dict:
    # No name, address or phone: a recording is the day's pattern, not a copy of people's orders.
    return {"name": label, "address": "Replayed", "lat": lat, "lng": lng}


def _after(moment: datetime | None, made: datetime) -> float | None:
    return round((moment - made).total_seconds(), 3) if moment else None


def _driver(driver: Driver, start: datetime, end: datetime) -> dict | None:
    """The driver's day: availability changes of their own (or their phone going quiet), where they started, and how
    they answered offers. None for a driver who was never online that day."""
    changes = AuditEvent.objects.filter(
        driver_id=driver.pk, type="driver.state_changed", occurred_at__gte=start, occurred_at__lt=end
    ).order_by("id")
    before = (
        AuditEvent.objects.filter(driver_id=driver.pk, type="driver.state_changed", occurred_at__lt=start)
        .order_by("-id")
        .values_list("to_state", flat=True)
        .first()
    )
    moves = []
    if before not in (None, DriverState.OFFLINE):
        moves.append([start.isoformat(), "online"])  # the replay's drivers start the day offline
    if before == DriverState.ON_BREAK:
        moves.append([start.isoformat(), "on_break"])  # a break only starts from online: after going online
    for event in changes:
        own = event.actor_kind in _DRIVERS_OWN or event.payload.get("reason") == _PHONE_LOST
        move = _move(event.from_state, event.to_state) if own else None
        if move:
            moves.append([event.occurred_at.isoformat(), move])
    if not any(move == "online" for _, move in moves):
        return None
    offers = Offer.objects.filter(driver=driver, sent_at__gte=start, sent_at__lt=end, kind=Offer.Kind.DISPATCH)
    answers = defaultdict(int)
    response_s, reasons = [], []
    for status, sent, responded, reason in offers.values_list("status", "sent_at", "responded_at", "decline_reason"):
        if status in (OfferStatus.ACCEPTED, OfferStatus.DECLINED, OfferStatus.EXPIRED):
            answers[status] += 1
        if status in (OfferStatus.ACCEPTED, OfferStatus.DECLINED) and responded:
            response_s.append(round((responded - sent).total_seconds(), 3))
        if reason:
            reasons.append(reason)
    first_pickup = offers.aggregate(first=Min("sent_at"))["first"]
    position = None
    if first_pickup:
        offered = offers.filter(sent_at=first_pickup).values_list("delivery__pickup_lat", "delivery__pickup_lng")
        position = list(offered.first())
    return {
        "vehicle": driver.vehicle,
        "capacity": driver.capacity,
        "zone": driver.home_zone.code,
        "position": position,
        "moves": moves,
        "accepted": answers[OfferStatus.ACCEPTED],
        "declined": answers[OfferStatus.DECLINED],
        "expired": answers[OfferStatus.EXPIRED],
        "response_s": response_s,
        "decline_reasons": reasons,
    }


def _move(before: str, after: str) -> str | None:
    if after == DriverState.OFFLINE:
        return "offline"
    if after == DriverState.ON_BREAK:
        return "on_break"
    if before == DriverState.OFFLINE:
        return "online"
    if before == DriverState.ON_BREAK:
        return "end_break"
    return None
