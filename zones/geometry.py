"""Geometry of zones (GeoJSON polygons, lon/lat) through shapely, and great-circle distances.

Validity (closed rings, no self-intersection) and overlap between zones are shapely's answers, not hand-written
checks. Point in zone stays a ray-casting test behind the zone's bounding box (see `contains`).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shapely.geometry import MultiPolygon, Polygon

# The radius Redis uses for GEOSEARCH, so the database fallback orders and measures exactly as Redis does.
EARTH_RADIUS_KM = 6372.797560856
# Two active zones may share a border drawn a little apart: an overlap up to this share of the smaller zone's
# area is tolerated; beyond it a point could belong to two zones.
OVERLAP_TOLERANCE = 0.01


def haversine_km(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lng2 - lng1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lng: float, radius_km: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) of a box that contains the circle of radius_km around the point."""
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM)
    cos_lat = max(math.cos(math.radians(lat)), 1e-6)
    dlng = math.degrees(radius_km / (EARTH_RADIUS_KM * cos_lat))
    return lat - dlat, lat + dlat, lng - dlng, lng + dlng


def _shape(geojson: dict) -> Polygon | MultiPolygon:
    # shapely (with numpy, ~20 MB of RSS in each server process) is imported on the first zone edit or rebalancing
    # hint, not when the app loads: the hot paths (point in zone, distances) never need it.
    from shapely.geometry import shape

    return shape(geojson)


def _rings(geojson: dict) -> list:
    """Polygons of a Polygon or MultiPolygon geometry, each a list of rings (outer first, then holes)."""
    kind = geojson.get("type")
    if kind == "Polygon":
        return [geojson["coordinates"]]
    if kind == "MultiPolygon":
        return list(geojson["coordinates"])
    raise ValueError(f"zone geometry must be a Polygon or MultiPolygon, not {kind!r}")


def validate_geometry(geojson: dict) -> Polygon | MultiPolygon:
    """The shape of a zone's GeoJSON, or ValueError saying what is wrong with it."""
    for polygon in _rings(geojson):
        if not polygon:
            raise ValueError("a polygon needs at least one ring")
        for ring in polygon:
            # shapely closes an open ring silently; GeoJSON requires it closed, so an open one is a drawing mistake.
            if len(ring) < 4 or list(ring[0]) != list(ring[-1]):
                raise ValueError("each ring needs at least 4 positions and must be closed (last = first)")
            for position in ring:
                lng, lat = position[0], position[1]
                if not (-180 <= lng <= 180 and -90 <= lat <= 90):
                    raise ValueError(f"position {position} is not a lon/lat pair")
    geometry = _shape(geojson)
    if not geometry.is_valid:
        from shapely.validation import explain_validity  # as in _shape: the server's workers rarely get here

        raise ValueError(f"the polygon is not valid: {explain_validity(geometry)} (lon lat)")
    return geometry


def overlap_share(a: Polygon | MultiPolygon, b: Polygon | MultiPolygon) -> float:
    """How much of the smaller of two shapes the other covers (0 for shapes that only share a border)."""
    smaller = min(a.area, b.area)
    return a.intersection(b).area / smaller if smaller else 0.0


def _in_ring(lng: float, lat: float, ring: list[list[float]]) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i][0], ring[i][1]
        xj, yj = ring[j][0], ring[j][1]
        if (yi > lat) != (yj > lat) and lng < (xj - xi) * (lat - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def contains(geojson: dict, lat: float, lng: float) -> bool:
    """Ray casting, kept over shapely on the hot path (every location batch): its half-open edges give a point on
    a border shared by two zones to exactly one of them."""
    for polygon in _rings(geojson):
        outer, holes = polygon[0], polygon[1:]
        if _in_ring(lng, lat, outer) and not any(_in_ring(lng, lat, hole) for hole in holes):
            return True
    return False


def on_border(geojson: dict, lat: float, lng: float) -> bool:
    """Whether the point lies on one of the zone's edges (holes' included). `contains` gives a border shared by
    two zones to one of them, but the points of an outer edge, and a corner where three zones meet, to none."""
    for polygon in _rings(geojson):
        for ring in polygon:
            for a, b in pairwise(ring):
                (x1, y1), (x2, y2) = a[:2], b[:2]  # a position may carry an altitude
                cross = (x2 - x1) * (lat - y1) - (y2 - y1) * (lng - x1)
                if abs(cross) <= 1e-12 and min(x1, x2) <= lng <= max(x1, x2) and min(y1, y2) <= lat <= max(y1, y2):
                    return True
    return False


def centre(geojson: dict) -> tuple[float, float]:
    """(lat, lng) of a point inside the zone near its middle (the centroid when that is inside)."""
    geometry = _shape(geojson)
    point = geometry.centroid if geometry.contains(geometry.centroid) else geometry.representative_point()
    return point.y, point.x


def bbox(geojson: dict) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) of the geometry."""
    min_lng, min_lat, max_lng, max_lat = _shape(geojson).bounds
    return min_lat, max_lat, min_lng, max_lng
