"""The delivery timeline turns recorded dispatch reasoning and changes into readable sentences."""

import zoneinfo

from django.utils import timezone

from deliveries.models import EscalationLevel
from deliveries.timeline import describe, duration

ANA = {"driver_id": "a", "name": "Ana", "distance_km": 1.234, "eta_to_pickup_s": 241, "score": 241}
CARL = {"driver_id": "c", "name": "Carl", "distance_km": 2.0, "eta_to_pickup_s": 370, "score": 370}


def test_a_dispatch_decision_names_the_driver_offered_and_those_skipped():
    payload = {
        "chosen": ANA,
        "candidates": [ANA],
        "excluded": [{"driver_id": "b", "name": "Ben", "reason": "declined"}],
        "radius_km": 5.0,
        "zones": ["centro"],
    }
    assert describe("dispatch.decided", "", "", payload) == "offered to Ana, 1.2 km, 4 min; skipped Ben: declined"


def test_runners_up_and_distances_of_skipped_drivers_are_shown():
    payload = {
        "chosen": ANA,
        "candidates": [ANA, CARL],
        "excluded": [
            {"driver_id": "b", "name": "Ben", "reason": "previous_driver", "distance_km": 0.4},
            {"driver_id": "d", "name": "Dora", "reason": "stale_location"},
        ],
    }
    assert describe("dispatch.decided", "", "", payload) == (
        "offered to Ana, 1.2 km, 4 min; also ranked Carl, 2.0 km, 6 min; "
        "skipped Ben (0.4 km): previous driver, Dora: stale location"
    )


def test_a_dispatch_without_candidates_says_so():
    payload = {"chosen": None, "candidates": [], "excluded": [{"name": "Ben", "reason": "on_break"}]}
    assert describe("dispatch.no_candidate", "", "", payload) == "no driver could be offered it; skipped Ben: on break"


def test_a_held_dispatch_says_until_when():
    payload = {"until": "2026-11-25T12:14:00+00:00", "chosen": None, "candidates": [ANA], "excluded": []}
    assert describe("dispatch.held", "", "", payload) == (
        "held until 12:14:00 UTC so the driver does not wait for the food; also ranked Ana, 1.2 km, 4 min"
    )


def test_state_changes_read_with_their_reason():
    assert describe("delivery.created", "", "pending", {"zone": "centro"}) == "pending"
    assert describe("delivery.assigned", "offered", "assigned", {"how": "offer"}) == "offered → assigned: by offer"
    assert (
        describe("delivery.pending", "assigned", "pending", {"reason": "released: flat tyre"})
        == "assigned → pending: released: flat tyre"
    )
    assert describe("offer.declined", "pending", "declined", {"reason": "too_far", "note": ""}) == (
        "pending → declined: too far"
    )
    assert describe(
        "escalation.opened", "", "open", {"reason": "unassigned", "level": EscalationLevel.ALERT, "detail": "5 min"}
    ) == ("open: level 2, unassigned, 5 min")


def test_an_offer_shows_what_the_driver_saw():
    payload = {"kind": "dispatch", "distance_km": 1.25, "eta_to_pickup_s": 45, "estimated_pay": "4.10"}
    assert describe("offer.created", "", "pending", payload) == "pending: dispatch, 1.2 km, 45 s to pickup, pay 4.10"


def test_durations_round_to_what_matters():
    assert [duration(s) for s in (0, 59, 90, 3599, 3900)] == ["0 s", "59 s", "2 min", "1 h", "1 h 5 min"]


def test_a_moved_eta_shows_the_new_dropoff_and_window():
    payload = {
        "pickup": "2026-11-25T12:03:00Z",
        "dropoff": "2026-11-25T12:21:40Z",
        "window_start": "2026-11-25T12:21:40Z",
        "window_end": "2026-11-25T12:26:10Z",
    }
    assert describe("delivery.eta_updated", "", "", payload) == "dropoff 12:21 UTC, window 12:21–12:26"


def test_times_of_day_are_in_the_console_viewers_zone_and_name_it():
    """In the console the active zone is the viewer's (core/time_zones.py): a sentence saying "UTC" there made ops
    in Lisbon or Los Angeles work out the time themselves."""
    eta = {
        "dropoff": "2026-11-25T12:21:40Z",
        "window_start": "2026-11-25T12:21:40Z",
        "window_end": "2026-11-25T12:26:10Z",
    }
    held = {"until": "2026-11-25T12:14:00+00:00", "chosen": None, "candidates": [], "excluded": []}
    with timezone.override(zoneinfo.ZoneInfo("America/Los_Angeles")):
        assert describe("delivery.eta_updated", "", "", eta) == (
            "dropoff 04:21 America/Los_Angeles, window 04:21–04:26"
        )
        assert describe("dispatch.held", "", "", held) == (
            "held until 04:14:00 America/Los_Angeles so the driver does not wait for the food"
        )
