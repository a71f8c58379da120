"""A delivery's audit events as sentences ops can read at a glance on its admin page (SPEC 3.2: the dispatch
reasoning must be readable, not a JSON blob). Pure functions of the event's fields: no queries. Times of day are
in the active time zone (the console viewer's: core/time_zones.py) and say which."""

from datetime import datetime

from django.utils import timezone

from core.time_zones import clock, in_viewer_zone

# Event types whose payload carries a dispatch decision (see deliveries.services.dispatch.Decision).
DISPATCH_TYPES = {"dispatch.decided", "dispatch.no_candidate", "dispatch.held"}


def words(code: str) -> str:
    return str(code).replace("_", " ")


def duration(seconds: float) -> str:
    """45 s, 4 min, 1 h 5 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def distance(km: float) -> str:
    return f"{km:.1f} km"


def _ranked(candidate: dict) -> str:
    return f"{candidate['name']}, {distance(candidate['distance_km'])}, {duration(candidate['eta_to_pickup_s'])}"


def _skipped(excluded: dict) -> str:
    where = f" ({distance(excluded['distance_km'])})" if excluded.get("distance_km") is not None else ""
    return f"{excluded['name']}{where}: {words(excluded['reason'])}"


def held_until(until: datetime) -> str:
    return f"held until {clock(until, '%H:%M:%S')} so the driver does not wait for the food"


def describe_dispatch(event_type: str, payload: dict) -> str:
    """e.g. "offered to Ana, 1.2 km, 4 min; also ranked Carl, 2.0 km, 6 min; skipped Ben: declined"."""
    chosen = payload.get("chosen")
    if event_type == "dispatch.held":
        parts = [held_until(datetime.fromisoformat(payload["until"]))]
    elif chosen:
        parts = [f"offered to {_ranked(chosen)}"]
    else:
        parts = ["no driver could be offered it"]
    chosen_id = chosen.get("driver_id") if chosen else None
    others = [c for c in payload.get("candidates", []) if c.get("driver_id") != chosen_id]
    if others:
        parts.append("also ranked " + "; ".join(_ranked(c) for c in others))
    if payload.get("excluded"):
        parts.append("skipped " + ", ".join(_skipped(e) for e in payload["excluded"]))
    if payload.get("search", {}).get("detail"):
        parts.append("searched wider: " + payload["search"]["detail"])
    return "; ".join(parts)


def _instant(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _hours_minutes(iso: str) -> str:
    return f"{timezone.localtime(_instant(iso)):%H:%M}"


def shown_detail(payload: dict) -> str:
    """What an escalation event said, a time of day in it in the viewer's zone (`detail_at`: core/time_zones.py)."""
    if payload.get("detail_at"):
        return in_viewer_zone(payload["detail"], _instant(payload["detail_at"]))
    return payload["detail"]


def describe(event_type: str, from_state: str, to_state: str, payload: dict) -> str:
    """One line for one event: what changed and why, from the fields the event recorded."""
    if event_type in DISPATCH_TYPES:
        return describe_dispatch(event_type, payload)
    change = f"{words(from_state)} → {words(to_state)}" if from_state and to_state else words(to_state)
    details = []
    if payload.get("how"):
        details.append(f"by {words(payload['how'])}")
    if payload.get("reason") and event_type != "driver.state_changed":
        details.append(words(payload["reason"]))
    if payload.get("note"):
        details.append(f"“{payload['note']}”")
    if payload.get("detail"):
        details.append(shown_detail(payload))
    if event_type == "offer.created":
        details.append(
            f"{words(payload['kind'])}, {distance(payload['distance_km'])}, "
            f"{duration(payload['eta_to_pickup_s'])} to pickup, pay {payload['estimated_pay']}"
            + (f" (surge ×{payload['surge_multiplier']})" if payload.get("surge_multiplier", "1.00") != "1.00" else "")
        )
    if event_type == "delivery.eta_updated" and payload.get("dropoff"):
        details.append(
            f"dropoff {clock(_instant(payload['dropoff']))}, window {_hours_minutes(payload['window_start'])}–"
            f"{_hours_minutes(payload['window_end'])}"
        )
    if event_type.startswith("escalation.") and "level" in payload:
        details.insert(0, f"level {payload['level']}")
    return ": ".join(filter(None, [change, ", ".join(details)]))
