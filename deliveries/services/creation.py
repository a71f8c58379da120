import hashlib
import json
import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from core.audit import Actor, atomic_action, record_event
from core.errors import BadInput, DomainError
from deliveries import selectors
from deliveries.models import Delivery, Merchant
from deliveries.pricing import delivery_fee
from deliveries.services import tracking
from deliveries.services.dispatch import dispatch_locked
from deliveries.webhooks import enqueue_webhook
from zones.geometry import haversine_km
from zones.models import Zone
from zones.selectors import zone_for_point

log = logging.getLogger(__name__)
# `ready_at` and `promised_by` must fall within this of now: further out they are typos, and times near the ends
# of the calendar overflow every estimate computed from them (an ETA past year 9999 is a crash, not a date).
SCHEDULE_HORIZON = timedelta(days=7)


class OutsideServiceArea(BadInput):
    code = "outside_service_area"
    default_detail = "The pickup is outside every active zone."


class DuplicateExternalId(DomainError):
    code = "duplicate_external_id"
    default_detail = "A different delivery with this external_id already exists."


def _fingerprint(data: dict) -> str:
    def default(value):
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(type(value))

    return hashlib.sha256(json.dumps(data, sort_keys=True, default=default).encode()).hexdigest()


def create_delivery(*, merchant: Merchant, data: dict) -> tuple[Delivery, bool]:
    """Create a delivery from validated input and offer it at once. Returns (delivery, created).

    `(merchant, external_id)` is unique: sending the same delivery again returns the existing one; sending a
    different one under a used external_id is refused, so nothing the merchant sent is silently dropped.
    """
    _check_schedule(data)
    pickup = data["pickup"]
    zone = zone_for_point(pickup["lat"], pickup["lng"])
    if zone is None:
        raise OutsideServiceArea(fields={"pickup": ["This point is outside every active zone."]})
    pickup, dropoff = data["pickup"], data["dropoff"]
    distance = haversine_km(pickup["lat"], pickup["lng"], dropoff["lat"], dropoff["lng"])
    _check_distance(distance)
    fingerprint = _fingerprint(data)
    try:
        return _create_and_offer(merchant, zone, data, fingerprint, distance), True
    except IntegrityError:
        # Sent before (a retry), or by a concurrent request that won the insert: the unique key says which row.
        existing = Delivery.objects.get(merchant=merchant, external_id=data["external_id"])
        return _same_or_conflict(existing, fingerprint), False


def _create_and_offer(merchant: Merchant, zone: Zone, data: dict, fingerprint: str, distance: float) -> Delivery:
    """Save the delivery and make its first offer in ONE transaction: the row just inserted is already locked
    and held, so dispatch neither re-reads nor re-locks it. If the offer fails, the delivery is saved alone (the
    dispatch sweep retries any pending delivery). Raises IntegrityError when the external_id is taken."""
    saved = False
    try:
        with atomic_action() as recorded:
            delivery = _save_new(merchant, zone, data, fingerprint, distance)
            saved = True
            delivery = dispatch_locked(delivery).delivery  # the row dispatch changed: current, nothing to re-read
    except Exception:
        if not saved:
            raise
        log.exception("first dispatch of %s failed; saved without it, the sweep will retry", data["external_id"])
        with atomic_action():
            return _save_new(merchant, zone, data, fingerprint, distance)
    selectors.hold_status_changes(delivery, recorded)  # nor its events, for the answer
    return delivery


def _save_new(merchant: Merchant, zone: Zone, data: dict, fingerprint: str, distance: float) -> Delivery:
    pickup, dropoff = data["pickup"], data["dropoff"]
    delivery = Delivery(
        merchant=merchant,
        external_id=data["external_id"],
        request_fingerprint=fingerprint,
        zone=zone,
        pickup_name=pickup["name"],
        pickup_address=pickup["address"],
        pickup_lat=pickup["lat"],
        pickup_lng=pickup["lng"],
        pickup_phone=pickup.get("phone", ""),
        dropoff_name=dropoff["name"],
        dropoff_address=dropoff["address"],
        dropoff_lat=dropoff["lat"],
        dropoff_lng=dropoff["lng"],
        dropoff_phone=dropoff.get("phone", ""),
        ready_at=data.get("ready_at"),
        promised_by=data.get("promised_by"),
        value=data.get("value"),
        notes=data.get("notes", ""),
        distance_km=distance,
        fee=delivery_fee(zone, distance),
    )
    delivery.save(force_insert=True)
    tracking.created_unwatched(delivery)
    record_event(
        "delivery.created",
        actor=Actor.merchant(merchant),
        subject=delivery,
        delivery_id=delivery.pk,
        to_state=delivery.status,
        payload={"zone": zone.code, "fee": str(delivery.fee), "distance_km": round(distance, 3)},
    )
    enqueue_webhook(delivery, "delivery.pending")
    return delivery


def _check_schedule(data: dict) -> None:
    now = timezone.now()
    fields = {
        name: [f"Must be within {SCHEDULE_HORIZON.days} days of now."]
        for name in ("ready_at", "promised_by")
        if data.get(name) is not None and abs(data[name] - now) > SCHEDULE_HORIZON
    }
    if fields:
        raise BadInput("The request is not valid; see fields.", fields=fields)


def _check_distance(distance: float) -> None:
    limit = settings.RELAY_MAX_DELIVERY_KM
    if distance > limit:
        raise OutsideServiceArea(
            f"The dropoff is {distance:,.1f} km from the pickup; deliveries go up to {limit} km.",
            fields={"dropoff": [f"This point is {distance:,.1f} km from the pickup (at most {limit} km)."]},
        )


def _same_or_conflict(existing: Delivery, fingerprint: str) -> Delivery:
    if existing.request_fingerprint != fingerprint:
        raise DuplicateExternalId(
            f"external_id {existing.external_id!r} is already used by delivery {existing.pk} with other details."
        )
    return existing
