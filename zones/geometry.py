"""Plain-Python geometry on GeoJSON (lon/lat) polygons and great-circle distances.

Zones are few and their polygons small, so a ray-casting test behind a bounding box is all the GIS we need.
"""

import math

# The radius Redis uses for GEOSEARCH, so the database fallback orders and measures exactly as Redis does.
EARTH_RADIUS_KM = 6372.797560856


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


def _rings(geometry: dict) -> list[list[list[list[float]]]]:
    """Polygons of a Polygon or MultiPolygon geometry, each a list of rings (outer first, then holes)."""
    kind = geometry.get("type")
    if kind == "Polygon":
        return [geometry["coordinates"]]
    if kind == "MultiPolygon":
        return list(geometry["coordinates"])
    raise ValueError(f"zone geometry must be a Polygon or MultiPolygon, not {kind!r}")


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


def contains(geometry: dict, lat: float, lng: float) -> bool:
    for polygon in _rings(geometry):
        outer, holes = polygon[0], polygon[1:]
        if _in_ring(lng, lat, outer) and not any(_in_ring(lng, lat, hole) for hole in holes):
            return True
    return False


def validate_geometry(geometry: dict) -> None:
    polygons = _rings(geometry)
    for polygon in polygons:
        if not polygon:
            raise ValueError("a polygon needs at least one ring")
        for ring in polygon:
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise ValueError("each ring needs at least 4 positions and must be closed")
            for position in ring:
                lng, lat = position[0], position[1]
                if not (-180 <= lng <= 180 and -90 <= lat <= 90):
                    raise ValueError(f"position {position} is not a lon/lat pair")


def bbox(geometry: dict) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lng, max_lng) of the geometry."""
    positions = [p for polygon in _rings(geometry) for ring in polygon for p in ring]
    lngs = [p[0] for p in positions]
    lats = [p[1] for p in positions]
    return min(lats), max(lats), min(lngs), max(lngs)
