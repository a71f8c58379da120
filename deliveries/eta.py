"""ETA (SPEC 4.1): straight-line distance × a road factor over a speed learned per zone, vehicle type and hour
of the week from completed deliveries, plus waiting for `ready_at` and service times; shown as a window from the
zone's recorded ETA errors (P50–P90).

A cell's learned speed is the SPEC's default until it has MIN_TRIPS trips, then its mean shrunk toward the
default (a prior worth PRIOR_TRIPS trips), so one odd hour does not swing it. Until the zone has MIN_ERRORS
recorded errors the window runs from the estimate to +WINDOW_SPREAD of the time left.
"""

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cachetools import TTLCache, cached
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core import compiled
from core.compiled import CompiledRead
from deliveries.models import Delivery, DeliveryStatus, TravelSpeed
from drivers import locations
from zones.geometry import haversine_km
from zones.models import Zone

ROAD_FACTOR = 1.3
DEFAULT_SPEED_KMH = {"bicycle": 15.0, "scooter": 20.0, "car": 25.0}
PICKUP_SERVICE_S = 120
DROPOFF_SERVICE_S = 120
MIN_TRIPS = 20
PRIOR_TRIPS = 10
MIN_ERRORS = 20
ERROR_SAMPLE = 500  # the zone's most recent errors
WINDOW_SPREAD = 0.3
MIN_WINDOW_S = 60
# A trip measured outside this range is noise (delivered late in the app, a GPS jump), not a speed to learn.
PLAUSIBLE_KMH = (2.0, 90.0)
# A new ETA is pushed only when it moved by more than this.
PUSH_WHEN_MOVED = timedelta(minutes=1)
# What was learned changes only as deliveries finish, yet every assignment and ETA refresh reads it: each process
# keeps what it read this long. A delivery finished in this process shows at once, in the others within this time.
LEARNED_KEPT_S = 60


@dataclass(frozen=True)
class Estimate:
    pickup: datetime
    dropoff: datetime
    window_start: datetime
    window_end: datetime

    def moved_from(self, delivery: Delivery) -> bool:
        """Whether this estimate differs from the one last shown by more than PUSH_WHEN_MOVED."""
        shown = delivery.eta_dropoff
        return shown is None or abs(self.dropoff - shown) > PUSH_WHEN_MOVED


def default_speed(vehicle: str) -> float:
    return DEFAULT_SPEED_KMH.get(vehicle, DEFAULT_SPEED_KMH["bicycle"])


def travel_seconds(distance_km: float, vehicle: str, speed_kmh: float | None = None) -> int:
    return round(distance_km * ROAD_FACTOR / (speed_kmh or default_speed(vehicle)) * 3600)


def hour_of_week(at: datetime, zone: Zone) -> int:
    local = at.astimezone(ZoneInfo(zone.time_zone))
    return local.weekday() * 24 + local.hour


def _speed_cell_query(zone_id, vehicle, hour):
    cells = TravelSpeed.objects.filter(zone_id=zone_id, vehicle=vehicle, hour_of_week=hour).order_by("pk")
    return cells.values_list("trips", "mean_kmh")[:1]


def _recent_errors_query(zone_id):
    recent = Delivery.objects.filter(zone_id=zone_id, eta_error_s__isnull=False).order_by("-finished_at")
    return recent.values_list("eta_error_s")[:ERROR_SAMPLE]


# Read at every assignment and ETA refresh: compiled once (core.compiled), kept LEARNED_KEPT_S (`forget_learned`).
_speed_cell_read = CompiledRead(TravelSpeed, _speed_cell_query, (compiled.INTEGER, compiled.TEXT, compiled.INTEGER))
_recent_errors_read = CompiledRead(Delivery, _recent_errors_query, (compiled.INTEGER,))
_learned_lock = threading.Lock()


@cached(TTLCache(maxsize=20_000, ttl=LEARNED_KEPT_S), lock=_learned_lock)
def _speed_cell(zone_id: int, vehicle: str, hour: int) -> tuple[int, float] | None:
    cell = _speed_cell_read(zone_id, vehicle, hour)
    return cell[0] if cell else None


@cached(TTLCache(maxsize=1_000, ttl=LEARNED_KEPT_S), lock=_learned_lock)
def _error_window(zone_id: int) -> tuple[int, int] | None:
    errors = sorted(error for (error,) in _recent_errors_read(zone_id))
    if len(errors) < MIN_ERRORS:
        return None
    return _percentile(errors, 0.5), _percentile(errors, 0.9)


def forget_learned() -> None:
    """Drop what this process keeps of learned speeds and errors: the next ETA reads them again."""
    _speed_cell.cache_clear()
    _error_window.cache_clear()


def learned_speed(zone: Zone, vehicle: str, at: datetime) -> float:
    default = default_speed(vehicle)
    cell = _speed_cell(zone.pk, vehicle, hour_of_week(at, zone))
    if cell is None or cell[0] < MIN_TRIPS:
        return default
    trips, mean_kmh = cell
    return (trips * mean_kmh + PRIOR_TRIPS * default) / (trips + PRIOR_TRIPS)


class Speeds:
    """The learned speed of each vehicle type in one zone at one moment, looked up once per type: what a dispatch
    ranks its candidates' ETAs to pickup with (SPEC 4.1: ETAs to pickup and to dropoff use the learned speeds)."""

    def __init__(self, zone: Zone, at: datetime) -> None:
        self.zone, self.at = zone, at
        self._kmh: dict[str, float] = {}

    def seconds(self, distance_km: float, vehicle: str) -> int:
        kmh = self._kmh.get(vehicle)
        if kmh is None:
            kmh = self._kmh[vehicle] = learned_speed(self.zone, vehicle, self.at)
        return travel_seconds(distance_km, vehicle, kmh)


def error_window(zone: Zone) -> tuple[int, int] | None:
    """P50 and P90 of the zone's recent ETA errors in seconds, or None while there are too few."""
    return _error_window(zone.pk)


def _percentile(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def estimate(delivery: Delivery, *, now: datetime | None = None) -> Estimate | None:
    """The ETA of a delivery with a driver (assigned or picked up); None otherwise."""
    now = now or timezone.now()
    driver = delivery.driver
    if driver is None or delivery.status not in (DeliveryStatus.ASSIGNED, DeliveryStatus.PICKED_UP):
        return None
    speed = learned_speed(delivery.zone, driver.vehicle, now)
    position = locations.last_position(driver)
    if delivery.status == DeliveryStatus.ASSIGNED:
        to_pickup = (
            haversine_km(position.lat, position.lng, delivery.pickup_lat, delivery.pickup_lng) if position else 0
        )
        pickup = now + timedelta(seconds=travel_seconds(to_pickup, driver.vehicle, speed))
        if delivery.ready_at and delivery.ready_at > pickup:
            pickup = delivery.ready_at
        leg_start = pickup + timedelta(seconds=PICKUP_SERVICE_S)
        remaining_km = delivery.distance_km
    else:
        pickup = delivery.picked_up_at
        leg_start = now
        remaining_km = delivery.distance_km
        if position:
            remaining_km = haversine_km(position.lat, position.lng, delivery.dropoff_lat, delivery.dropoff_lng)
    dropoff = leg_start + timedelta(seconds=travel_seconds(remaining_km, driver.vehicle, speed) + DROPOFF_SERVICE_S)
    errors = error_window(delivery.zone)
    if errors is None:
        start, end = 0, round((dropoff - now).total_seconds() * WINDOW_SPREAD)
    else:
        start, end = errors
    end = max(end, start + MIN_WINDOW_S)
    return Estimate(pickup, dropoff, dropoff + timedelta(seconds=start), dropoff + timedelta(seconds=end))


def show_locked(delivery: Delivery, shown: Estimate | None) -> None:
    """Set the ETA customers and the merchant see (saved by the caller)."""
    delivery.eta_pickup = shown.pickup if shown else None
    delivery.eta_dropoff = shown.dropoff if shown else None
    delivery.eta_window_start = shown.window_start if shown else None
    delivery.eta_window_end = shown.window_end if shown else None


def shown(delivery: Delivery) -> dict | None:
    """The ETA last shown, as API.md spells it (`eta` of the merchant's and the customer's views)."""
    if delivery.eta_dropoff is None:
        return None
    return {
        "pickup": delivery.eta_pickup,
        "dropoff": delivery.eta_dropoff,
        "window_start": delivery.eta_window_start,
        "window_end": delivery.eta_window_end,
    }


def predict_at_assignment_locked(delivery: Delivery) -> None:
    """Keep what was predicted when the driver took it: the error is measured against this."""
    delivery.eta_predicted_at_assignment = delivery.eta_dropoff
    delivery.eta_window_start_at_assignment = delivery.eta_window_start
    delivery.eta_window_end_at_assignment = delivery.eta_window_end


def learn_from_delivery_locked(delivery: Delivery, *, vehicle: str) -> None:
    """At delivery: the ETA error, and the trip's speed into its zone/vehicle/hour-of-week cell. This process
    forgets what it had learned now (its own next read is fresh) and again at commit (what another thread read
    meanwhile was from before the change)."""
    forget_learned()
    transaction.on_commit(forget_learned)
    if delivery.eta_predicted_at_assignment is not None:
        delivery.eta_error_s = round((delivery.finished_at - delivery.eta_predicted_at_assignment).total_seconds())
    riding_s = (delivery.finished_at - delivery.picked_up_at).total_seconds() - DROPOFF_SERVICE_S
    if riding_s <= 0:
        return
    speed = delivery.distance_km * ROAD_FACTOR / (riding_s / 3600)
    if not PLAUSIBLE_KMH[0] <= speed <= PLAUSIBLE_KMH[1]:
        return
    cell = {
        "zone": delivery.zone,
        "vehicle": vehicle,
        "hour_of_week": hour_of_week(delivery.picked_up_at, delivery.zone),
    }
    try:
        with transaction.atomic():
            TravelSpeed.objects.get_or_create(**cell)
    except IntegrityError:
        pass  # created meanwhile by another delivery: the update below counts this trip
    # One UPDATE: SQL reads every right-hand side from the row before the change.
    TravelSpeed.objects.filter(**cell).update(
        mean_kmh=(F("mean_kmh") * F("trips") + speed) / (F("trips") + 1), trips=F("trips") + 1
    )
