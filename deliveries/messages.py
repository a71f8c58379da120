"""Everything the deliveries app sends out: websocket messages to drivers and ops, and webhook bodies to merchants.

One builder per message, used by the actions that send them. A message that shows a record the REST API also
shows (a delivery, an offer, an escalation) is that record's REST representation, so the app, the socket and the
API never disagree on a shape. Builders return JSON-ready values: they are stored (a driver's stream) and sent
as they are.
"""

import json
import uuid
from datetime import UTC, datetime

from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder

from deliveries.models import Delivery, DeliveryStatus, Escalation, Offer
from deliveries.serializers import (
    DriverDeliverySerializer,
    EscalationSerializer,
    OfferSerializer,
    TrackingSerializer,
    shown_eta,
)
from drivers import locations
from drivers.models import Break, Driver
from zones.models import ZoneHint


def _jsonable(data) -> dict:
    # REST representations hold dates, decimals and UUIDs as DRF renders them; a stored message must hold the same.
    return json.loads(json.dumps(data, cls=JSONEncoder))


def _represented(serializer) -> dict:
    """A record's REST representation, its times in UTC as the API writes them (API.md). DRF writes a time in the
    active zone, and a console action (core/time_zones.py) runs in its viewer's."""
    with timezone.override(UTC):
        return _jsonable(serializer.data)


# --- to a driver (`/ws/driver/`) --------------------------------------------------------------------------------


def driver_delivery(delivery: Delivery) -> dict:
    """`delivery.assigned`, `delivery.updated`: the delivery as its driver sees it."""
    return _represented(DriverDeliverySerializer(delivery))


def delivery_taken(delivery: Delivery, *, reason: str) -> dict:
    """`delivery.reassigned`, `delivery.cancelled`: the delivery the driver no longer has, and why."""
    return driver_delivery(delivery) | {"reason": reason}


def offer_created(offer: Offer) -> dict:
    """`offer.created`: the offer as the driver app lists it."""
    return _represented(OfferSerializer(offer))


# API.md names three reasons an offer is withdrawn; anything else that takes the offer away (ops reassigned the
# delivery, the driver went on a break or offline) supersedes it, and `cause` says what.
WITHDRAWN_AS = {"expired": "expired", "cancelled": "cancelled"}


def offer_withdrawn(offer: Offer, *, reason: str) -> dict:
    """`offer.withdrawn`: `reason` expired, cancelled or superseded (API.md), `cause` the withdrawal's own."""
    return {"offer_id": str(offer.pk), "reason": WITHDRAWN_AS.get(reason, "superseded"), "cause": reason}


def zone_hint(hint: ZoneHint) -> dict:
    """`zone.hint`: go where demand is (API.md: zone, name, lat, lng, surge_multiplier, message)."""
    lat, lng = hint.zone.centre
    return {
        "zone": hint.zone.code,
        "name": hint.zone.name,
        "lat": round(lat, 6),
        "lng": round(lng, 6),
        "surge_multiplier": str(hint.surge_multiplier),
        "message": hint.message,
    }


def driver_state(driver: Driver, *, reason: str, detail: str = "") -> dict:
    """`driver.state`: the driver's availability, and why it changed."""
    return {"state": driver.state, "reason": reason, "detail": detail}


# --- to ops (`/ws/ops/`) ----------------------------------------------------------------------------------------


def escalation(escalation: Escalation) -> dict:
    """`escalation.opened`, `escalation.updated`: the escalation as `GET /api/v1/ops/escalations` shows it."""
    return _represented(EscalationSerializer(escalation))


def zone_reading(reading) -> dict:
    """One zone's demand, supply and band (a `balancing.ZoneReading`), as `GET /api/v1/ops/zones` lists it and
    `zone.pressure` pushes it."""
    snapshot = reading.snapshot
    zone = snapshot.zone
    return {
        "code": zone.code,
        "name": zone.name,
        "open_deliveries": snapshot.demand_open,
        "created_last_15_min": snapshot.demand_recent,
        "available_drivers": snapshot.supply_available,
        "busy_drivers": snapshot.supply_busy,
        "on_break_drivers": snapshot.supply_on_break,
        "pressure": snapshot.pressure,
        "band": snapshot.band,
        "surge_multiplier": str(snapshot.surge_multiplier),
        "open_escalations": reading.open_escalations,
        "hints_sent_last_hour": reading.hints_sent,
        "hints_entered_last_hour": reading.hints_entered,
        "taken_at": snapshot.taken_at.isoformat(),
        "local_time": zone.local_time(snapshot.taken_at).strftime("%H:%M"),
    }


def zone_pressure(readings: list) -> dict:
    """`zone.pressure`: every active zone's reading, as the minute's snapshot took it."""
    return {"zones": [zone_reading(reading) for reading in readings]}


def break_over_limit(open_break: Break, *, now: datetime) -> dict:
    """`driver.break_over_limit`: a driver on a break longer than the zone allows (still on it, or just back)."""
    driver = open_break.driver
    return {
        "driver_id": str(driver.pk),
        "name": driver.name,
        "zone": driver.home_zone.code,
        "break_id": str(open_break.pk),
        "started_at": open_break.started_at.isoformat(),
        "seconds": round((now - open_break.started_at).total_seconds()),
        "limit_s": driver.home_zone.break_limit_s,
    }


# --- to a customer (`/ws/track/<token>/`, `GET /api/v1/track/<token>`) ---------------------------------------------


def tracking(delivery: Delivery) -> dict:
    """The tracking link's state (the JSON, and `status` on the socket), with the driver's last position while
    the delivery is on its way (picked up)."""
    position = locations.last_position(delivery.driver) if delivery.status == "picked_up" else None
    return _represented(TrackingSerializer(delivery, context={"location": position}))


def eta(delivery: Delivery) -> dict | None:
    """`eta` on the tracking socket, and the `data` of a `delivery.eta_updated` webhook: the ETA now shown."""
    return _jsonable(shown_eta(delivery))


# --- to a merchant (webhooks) -----------------------------------------------------------------------------------


def delivery_escalated(escalation: Escalation, *, detail: str) -> dict:
    """The `data` of a `delivery.escalated` webhook (level CRITICAL): how bad, why, and what was just seen."""
    return {"level": escalation.level, "reason": escalation.reason, "detail": detail}


def delivery_status_changed(delivery: Delivery) -> dict:
    """The `data` of a status webhook: why a delivery ended unsuccessfully (as its `outcome_reason` reads on a GET),
    so that the merchant need not fetch it to tell the customer."""
    if delivery.status in (DeliveryStatus.CANCELLED, DeliveryStatus.FAILED):
        return {"outcome_reason": delivery.outcome_reason}
    return {}


def webhook_body(event_id: uuid.UUID, type: str, delivery: Delivery, data: dict | None = None) -> str:
    """The signed body of a webhook (API.md, Merchant), compact: it is signed byte for byte."""
    return json.dumps(
        {
            "id": str(event_id),
            "type": type,
            "delivery_id": str(delivery.pk),
            "external_id": delivery.external_id,
            "status": delivery.status,
            "occurred_at": timezone.now().isoformat(),
            "data": data or {},
        },
        separators=(",", ":"),
    )
