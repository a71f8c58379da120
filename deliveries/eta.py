"""Travel-time estimates (SPEC 4.1): straight-line distance × a road factor over a speed per vehicle."""

from datetime import datetime, timedelta

from django.utils import timezone

from zones.geometry import haversine_km

ROAD_FACTOR = 1.3
DEFAULT_SPEED_KMH = {"bicycle": 15.0, "scooter": 20.0, "car": 25.0}
PICKUP_SERVICE_S = 120
DROPOFF_SERVICE_S = 120
# The P90 end of an ETA window, relative to the P50 estimate, until the zone's measured error is known.
WINDOW_SPREAD = 0.3


def travel_seconds(distance_km: float, vehicle: str) -> int:
    speed = DEFAULT_SPEED_KMH.get(vehicle, DEFAULT_SPEED_KMH["bicycle"])
    return round(distance_km * ROAD_FACTOR / speed * 3600)


def estimate(delivery, *, now: datetime | None = None) -> dict | None:
    """{"pickup", "dropoff", "window_start", "window_end"} for a delivery with a driver; None otherwise."""
    now = now or timezone.now()
    driver = delivery.driver
    if driver is None or delivery.status not in ("assigned", "picked_up"):
        return None
    if delivery.status == "assigned":
        if driver.last_lat is not None:
            to_pickup = haversine_km(driver.last_lat, driver.last_lng, delivery.pickup_lat, delivery.pickup_lng)
        else:
            to_pickup = 0.0
        pickup = now + timedelta(seconds=travel_seconds(to_pickup, driver.vehicle))
        if delivery.ready_at and delivery.ready_at > pickup:
            pickup = delivery.ready_at
        leg_start = pickup + timedelta(seconds=PICKUP_SERVICE_S)
        remaining_km = delivery.distance_km
    else:
        pickup = delivery.picked_up_at
        leg_start = now
        if driver.last_lat is not None:
            remaining_km = haversine_km(driver.last_lat, driver.last_lng, delivery.dropoff_lat, delivery.dropoff_lng)
        else:
            remaining_km = delivery.distance_km
    leg = travel_seconds(remaining_km, driver.vehicle) + DROPOFF_SERVICE_S
    dropoff = leg_start + timedelta(seconds=leg)
    spread = timedelta(seconds=max(60, round((dropoff - now).total_seconds() * WINDOW_SPREAD)))
    return {"pickup": pickup, "dropoff": dropoff, "window_start": dropoff, "window_end": dropoff + spread}
