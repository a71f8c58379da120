"""Pure geometry for the simulator: moving along a straight line at vehicle speed, and random places inside
the service area (a GeoJSON FeatureCollection of zones)."""

import json
import random
from dataclasses import dataclass
from pathlib import Path

from zones.geometry import bbox, contains, haversine_km

# The speeds Relay's ETAs assume (SPEC 4.1); a simulated driver rides at exactly these, times the speedup.
VEHICLE_SPEED_KMH = {"bicycle": 15.0, "scooter": 20.0, "car": 25.0}
# Closer than a millimetre is there: floating-point steps would otherwise leave a last step of nothing.
ARRIVED_WITHIN_KM = 1e-6


@dataclass(frozen=True)
class Position:
    lat: float
    lng: float

    def km_to(self, other: "Position") -> float:
        return haversine_km(self.lat, self.lng, other.lat, other.lng)


def speed_kmh(vehicle: str) -> float:
    return VEHICLE_SPEED_KMH.get(vehicle, VEHICLE_SPEED_KMH["bicycle"])


def step_toward(position: Position, target: Position, *, speed_kmh: float, seconds: float) -> tuple[Position, bool]:
    """Where a driver riding straight at `target` is after `seconds` (simulated), and whether it arrived.

    Linear in lat/lng: over a city's few kilometres the error against the great circle is negligible."""
    remaining_km = position.km_to(target)
    travel_km = max(0.0, speed_kmh) * max(0.0, seconds) / 3600
    if travel_km >= remaining_km - ARRIVED_WITHIN_KM:
        return target, True
    fraction = travel_km / remaining_km
    return (
        Position(
            position.lat + (target.lat - position.lat) * fraction,
            position.lng + (target.lng - position.lng) * fraction,
        ),
        False,
    )


class ServiceArea:
    """The zones' polygons, to draw pickups, dropoffs and drivers' starting points from."""

    def __init__(self, geometries: list[dict]):
        if not geometries:
            raise ValueError("the service area needs at least one zone polygon")
        self.geometries = geometries
        boxes = [bbox(geometry) for geometry in geometries]
        self.min_lat = min(box[0] for box in boxes)
        self.max_lat = max(box[1] for box in boxes)
        self.min_lng = min(box[2] for box in boxes)
        self.max_lng = max(box[3] for box in boxes)

    @classmethod
    def from_geojson(cls, path: Path) -> "ServiceArea":
        collection = json.loads(Path(path).read_text())
        return cls([feature["geometry"] for feature in collection.get("features", [])])

    def contains(self, position: Position) -> bool:
        return any(contains(geometry, position.lat, position.lng) for geometry in self.geometries)

    def random_point(self, rng: random.Random) -> Position:
        for _ in range(1000):
            point = Position(rng.uniform(self.min_lat, self.max_lat), rng.uniform(self.min_lng, self.max_lng))
            if self.contains(point):
                return point
        raise ValueError("could not draw a point inside the service area")

    def random_point_near(self, rng: random.Random, origin: Position, *, min_km: float, max_km: float) -> Position:
        """A point of the area between min_km and max_km from origin (any point of the area if none is found)."""
        for _ in range(1000):
            point = self.random_point(rng)
            if min_km <= origin.km_to(point) <= max_km:
                return point
        return self.random_point(rng)
