"""The cost of a delivery when it ends (SPEC 5 / ADR-031): the driver's pay, part by part, the fee and the margin."""

from datetime import timedelta
from decimal import Decimal

from deliveries.models import Delivery, DeliveryCost, DeliveryStatus, Offer
from deliveries.pricing import driver_pay_parts


def record_cost_locked(delivery: Delivery) -> DeliveryCost:
    """Price a locked delivery that has just ended, inside the caller's transaction.

    Distance is what the driver rode: to the pickup (the accepted offer's distance) and, once picked up, to the
    dropoff. Minutes run from the (last) assignment to the end. Waiting pay covers the time a driver was at the
    pickup before `ready_at` (arrival estimated as assignment + the offer's ETA to pickup). Surge is the accepted
    offer's multiplier. A delivery cancelled before it had a driver costs nothing and earns nothing."""
    offer = (
        Offer.objects.accepted().filter(delivery=delivery, driver_id=delivery.driver_id).order_by("-sent_at").first()
        if delivery.driver_id
        else None
    )
    parts = None
    distance_km = minutes = waiting_minutes = 0.0
    surge = Decimal("1.00")
    if offer is not None and delivery.assigned_at is not None:
        distance_km = offer.distance_km + (delivery.distance_km if delivery.picked_up_at else 0.0)
        minutes = (delivery.finished_at - delivery.assigned_at).total_seconds() / 60
        waiting_minutes = _waiting_minutes(delivery, offer)
        surge = offer.surge_multiplier
        parts = driver_pay_parts(
            delivery.zone, distance_km=distance_km, minutes=minutes, surge=surge, waiting_minutes=waiting_minutes
        )
    zero = Decimal("0.00")
    fee = zero if delivery.status == DeliveryStatus.CANCELLED else delivery.fee
    pay = parts.total if parts else zero
    return DeliveryCost.objects.create(
        delivery=delivery,
        zone=delivery.zone,
        driver_id=delivery.driver_id,
        outcome=delivery.status,
        ended_at=delivery.finished_at,
        distance_km=round(distance_km, 3),
        minutes=round(minutes, 2),
        waiting_minutes=round(waiting_minutes, 2),
        surge_multiplier=surge,
        pay_base=parts.base if parts else zero,
        pay_distance=parts.distance if parts else zero,
        pay_time=parts.time if parts else zero,
        pay_surge=parts.surge if parts else zero,
        pay_waiting=parts.waiting if parts else zero,
        driver_pay=pay,
        fee=fee,
        margin=fee - pay,
    )


def _waiting_minutes(delivery: Delivery, offer: Offer) -> float:
    if delivery.ready_at is None:
        return 0.0
    arrived = delivery.assigned_at + timedelta(seconds=offer.eta_to_pickup_s)
    waited_until = min(delivery.ready_at, delivery.picked_up_at or delivery.finished_at)
    return max(0.0, (waited_until - arrived).total_seconds() / 60)
