"""ADR-024: offers, one driver at a time, with deadlines; declines and expiry pass the job on."""

import base64
import math
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries import eta
from deliveries.models import EscalationLevel, Offer, TravelSpeed
from deliveries.services import offers
from deliveries.services.availability import mark_stale_drivers
from deliveries.services.progress import deliver_delivery, pick_up_delivery
from deliveries.services.reassignment import send_back_to_dispatch
from drivers import locations
from drivers.models import DriverMessage
from tests import factories
from tests.conftest import api_client_for
from zones.geometry import EARTH_RADIUS_KM
from zones.models import Zone

pytestmark = pytest.mark.django_db
# A zone of the default policy around Porto, about 25 by 22 km, far from the demo zones.
WIDE_ZONE = {
    "type": "Polygon",
    "coordinates": [[[-8.75, 41.05], [-8.45, 41.05], [-8.45, 41.25], [-8.75, 41.25], [-8.75, 41.05]]],
}


def test_offered_to_the_nearest_driver_with_the_offer_details(merchant_api, clock):
    near, far = factories.online_driver(*factories.east(0.5)), factories.online_driver(*factories.east(1.5))
    delivery = factories.delivery_via_api(merchant_api)
    assert delivery.status == "offered"
    offer = factories.pending_offer(delivery)
    assert offer.driver == near
    assert offer.expires_at == timezone.now() + timedelta(seconds=30)
    assert offer.distance_km == pytest.approx(0.5, abs=0.01)
    assert offer.eta_to_pickup_s == round(0.5 * 1.3 / 15 * 3600)
    listed = api_client_for(near.user).get("/api/v1/driver/offers?status=pending").json()["results"]
    assert [o["id"] for o in listed] == [str(offer.pk)]
    for field in ("delivery", "expires_at", "distance_km", "eta_to_pickup_s", "estimated_pay", "surge_multiplier"):
        assert field in listed[0]
    assert "phone" not in listed[0]["delivery"]["dropoff"]  # contact details only after accepting
    assert api_client_for(far.user).get("/api/v1/driver/offers?status=pending").json()["results"] == []
    decided = AuditEvent.objects.get(delivery_id=delivery.pk, type="dispatch.decided")
    assert decided.payload["chosen"]["driver_id"] == str(near.pk)
    assert [c["driver_id"] for c in decided.payload["candidates"]] == [str(near.pk), str(far.pk)]


def _out_of_reach_drivers(count: int) -> list:
    """Available drivers of the zone whose last location is two minutes old: the search skips them (stale)."""
    a_while_ago = timezone.now() - timedelta(minutes=2)
    silent = [factories.online_driver(*factories.east(1.2), seen_at=a_while_ago) for _ in range(count)]
    locations.flush_positions()  # with Redis, the beat flush that puts positions (and zones) in the database
    return silent


def _decided(delivery) -> dict:
    return AuditEvent.objects.get(delivery_id=delivery.pk, type="dispatch.decided").payload


def test_the_reasoning_names_the_drivers_the_search_did_not_find_and_why(merchant_api, clock, monkeypatch):
    """Available drivers of the searched zones that the location search did not return are listed as excluded:
    stale (no fresh location) or too far (beyond the search: here beyond a pool of one)."""
    from deliveries.services import dispatch

    monkeypatch.setattr(dispatch, "CANDIDATE_POOL", 1)
    near = factories.online_driver(*factories.east(0.5))
    farther = factories.online_driver(*factories.east(1.0))
    silent = _out_of_reach_drivers(dispatch.OUT_OF_REACH_LISTED - 1)
    delivery = factories.delivery_via_api(merchant_api)

    assert factories.pending_offer(delivery).driver == near
    decided = _decided(delivery)
    assert [c["driver_id"] for c in decided["candidates"]] == [str(near.pk)]
    assert {e["driver_id"]: e["reason"] for e in decided["excluded"]} == {str(farther.pk): "too_far"} | {
        str(d.pk): "stale_location" for d in silent
    }


def test_the_reasoning_lists_at_most_twenty_drivers_out_of_reach(merchant_api, clock):
    from deliveries.services import dispatch

    near = factories.online_driver(*factories.east(0.5))
    silent = {str(d.pk) for d in _out_of_reach_drivers(dispatch.OUT_OF_REACH_LISTED + 1)}
    delivery = factories.delivery_via_api(merchant_api)

    assert factories.pending_offer(delivery).driver == near
    listed = [e["driver_id"] for e in _decided(delivery)["excluded"]]
    assert len(listed) == dispatch.OUT_OF_REACH_LISTED == 20
    assert set(listed) < silent


def test_near_ties_go_to_the_driver_idle_longest(merchant_api, clock):
    # By bicycle 0.8 km is ~250 s from pickup and 0.7 km ~218 s: within 60 s, so idle time decides.
    idle_longer = factories.online_driver(*factories.east(0.8))
    clock.shift(600)
    factories.ping(idle_longer, *factories.east(0.8))
    factories.online_driver(*factories.east(0.7))
    assert factories.pending_offer(factories.delivery_via_api(merchant_api)).driver == idle_longer


def test_a_clearly_nearer_driver_wins_over_idle_time(merchant_api, clock):
    # 1.2 km is ~374 s away, 0.7 km ~218 s: not a near-tie, so the nearer driver gets it.
    idle_longer = factories.online_driver(*factories.east(1.2))
    clock.shift(600)
    factories.ping(idle_longer, *factories.east(1.2))
    nearer = factories.online_driver(*factories.east(0.7))
    assert factories.pending_offer(factories.delivery_via_api(merchant_api)).driver == nearer


@pytest.mark.parametrize(("seconds_farther", "idle_longest_wins"), [(55, True), (65, False)])
def test_a_near_tie_is_within_60_seconds_of_the_best_eta(merchant_api, clock, seconds_farther, idle_longest_wins):
    """SPEC 2.1: among near-ties (within 60 s) the driver idle longest; beyond, the lowest ETA."""
    farther_km = 0.5 + seconds_farther / (1.3 / 15 * 3600)  # by bicycle at the default 15 km/h
    idle_longer = factories.online_driver(*factories.east(farther_km))
    clock.shift(600)
    factories.ping(idle_longer, *factories.east(farther_km))
    nearer = factories.online_driver(*factories.east(0.5))
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    assert offer.driver == (idle_longer if idle_longest_wins else nearer)


def test_a_driver_already_carrying_a_delivery_is_not_the_one_idle_longest(merchant, merchant_api, clock):
    """A driver with room for a second delivery stays available, but carrying one they are not idle: a near-tie
    goes to the driver who has waited for work, however long the carrier has been online."""
    carrier = factories.online_driver(*factories.east(0.8), capacity=2)
    factories.assigned_delivery(merchant, carrier, "first")
    clock.shift(600)
    factories.ping(carrier, *factories.east(0.8))
    waiting = factories.online_driver(*factories.east(0.7))  # online 10 minutes after the carrier
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api, "second"))
    assert offer.driver == waiting
    decided = AuditEvent.objects.get(delivery_id=offer.delivery_id, type="dispatch.decided").payload
    described = {c["driver_id"]: c for c in decided["candidates"]}
    assert (described[str(carrier.pk)]["carrying"], described[str(carrier.pk)]["idle_since"]) == (1, None)
    assert described[str(waiting.pk)]["carrying"] == 0


def test_a_driver_who_just_finished_a_delivery_is_idle_since_then(merchant, merchant_api, clock):
    """A driver with room for two stays available through their deliveries: idle since they went online would
    count the hours they worked. Idle since their last delivery ended, they come after a driver who waited longer."""
    worked = factories.online_driver(*factories.east(0.8), capacity=2)
    carried = factories.assigned_delivery(merchant, worked, "first")
    clock.shift(300)
    waiting = factories.online_driver(*factories.east(0.7))  # online 5 minutes after the other
    clock.shift(300)
    pick_up_delivery(carried.pk, actor=Actor.driver(worked))
    deliver_delivery(carried.pk, actor=Actor.driver(worked))
    finished_at = timezone.now()
    clock.shift(60)
    factories.ping(worked, *factories.east(0.8))
    factories.ping(waiting, *factories.east(0.7))

    offer = factories.pending_offer(factories.delivery_via_api(merchant_api, "second"))

    assert offer.driver == waiting
    decided = AuditEvent.objects.get(delivery_id=offer.delivery_id, type="dispatch.decided").payload
    described = {c["driver_id"]: c for c in decided["candidates"]}
    assert described[str(worked.pk)]["idle_since"] == finished_at.isoformat()


def test_the_eta_to_pickup_uses_the_speed_learned_in_the_zone(merchant_api, zones, clock):
    """SPEC 4.1: ETAs to pickup use the speed learned per zone, vehicle and hour. By default a car 0.5 km away
    (~94 s) beats a bicycle 0.7 km away (~218 s); where cars are learned to crawl at this hour, the bicycle wins,
    and the car's offer would have shown its learned ETA."""
    hour = eta.hour_of_week(timezone.now(), zones["centro"])
    TravelSpeed.objects.create(zone=zones["centro"], vehicle="car", hour_of_week=hour, trips=100, mean_kmh=5.0)
    car = factories.online_driver(*factories.east(0.5), vehicle="car")
    bicycle = factories.online_driver(*factories.east(0.7), vehicle="bicycle")
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    assert offer.driver == bicycle
    assert offer.eta_to_pickup_s == round(0.7 * 1.3 / 15 * 3600)  # no cell for bicycles: the default 15 km/h
    decided = AuditEvent.objects.get(delivery_id=offer.delivery_id, type="dispatch.decided").payload
    car_kmh = eta.learned_speed(zones["centro"], "car", timezone.now())
    assert car_kmh < 8
    car_eta = {c["driver_id"]: c["eta_to_pickup_s"] for c in decided["candidates"]}[str(car.pk)]
    assert car_eta == pytest.approx(0.5 * 1.3 / car_kmh * 3600, abs=3)


@pytest.mark.parametrize(("vehicle", "kmh"), [("bicycle", 15), ("scooter", 20), ("car", 25)])
def test_the_eta_to_pickup_shown_in_an_offer_is_the_road_distance_at_the_vehicles_default_speed(
    merchant_api, vehicle, kmh
):
    """SPEC 4.1: distance x road factor 1.3 over 15 km/h by bicycle, 20 by scooter, 25 by car (nothing learned)."""
    driver = factories.online_driver(*factories.east(2.0), vehicle=vehicle)
    factories.delivery_via_api(merchant_api)
    (shown,) = api_client_for(driver.user).get("/api/v1/driver/offers?status=pending").json()["results"]
    assert shown["distance_km"] == pytest.approx(2.0, abs=0.02)
    assert shown["eta_to_pickup_s"] == pytest.approx(shown["distance_km"] * 1.3 / kmh * 3600, abs=1)


@pytest.mark.parametrize(("age_s", "offered"), [(59, True), (61, False)])
def test_a_candidate_location_may_be_60_seconds_old_and_no_older(merchant_api, clock, age_s, offered):
    """SPEC 2.1: candidates have a fresh location (<= 60 s old)."""
    driver = factories.online_driver(*factories.east(0.5), seen_at=timezone.now() - timedelta(seconds=age_s))
    delivery = factories.delivery_via_api(merchant_api)
    assert (factories.pending_offer(delivery).driver == driver) if offered else delivery.status == "pending"


@pytest.mark.parametrize(
    ("km", "level", "offered"),
    [(4.9, EscalationLevel.NONE, True), (5.1, EscalationLevel.WARN, True), (7.6, EscalationLevel.ALERT, False)],
)
def test_the_search_reaches_5_km_and_half_as_far_again_once_widened(merchant_api, km, level, offered):
    """SPEC 2.1 and 2.3: candidates within the zone's search radius (default 5 km) of pickup; with nobody there the
    search widens x1.5 at once (level 1), and with nobody within 7.5 km either ops are alerted (level 2). In a zone
    of the default policy larger than the demo's (whose zones are under 5 km across)."""
    Zone.objects.create(code="wide", name="Wide", polygon=WIDE_ZONE)
    pickup = (41.15, -8.6)
    driver = factories.online_driver(pickup[0] + math.degrees(km / EARTH_RADIUS_KM), pickup[1])  # km due north
    delivery = factories.delivery_via_api(merchant_api, pickup=pickup, dropoff=(41.16, -8.6))
    assert (delivery.zone.code, delivery.escalation_level) == ("wide", level)
    assert (factories.pending_offer(delivery).driver == driver) if offered else delivery.status == "pending"


def test_a_tracking_link_holds_at_least_128_random_bits(merchant):
    """SPEC 4.1: the link's token is the only credential, so it must not be guessable."""
    tokens = {factories.new_delivery(merchant, f"order-{i}").tracking_token for i in range(20)}
    assert len(tokens) == 20
    assert all(len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128 for token in tokens)


def test_decline_passes_on_and_never_comes_back(merchant_api):
    first, second = factories.online_driver(*factories.east(0.3)), factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    offer = factories.pending_offer(delivery)
    response = api_client_for(first.user).post(
        f"/api/v1/offers/{offer.pk}/decline", {"reason": "too_far", "note": "bridge closed"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status"] == "declined"
    assert factories.pending_offer(delivery).driver == second
    offers.decline_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(second), reason="busy")
    delivery.refresh_from_db()
    assert delivery.status == "pending"  # nobody left: the first driver is not asked again
    last = AuditEvent.objects.filter(delivery_id=delivery.pk, type="dispatch.no_candidate").get()
    reasons = {e["driver_id"]: e["reason"] for e in last.payload["excluded"]}
    assert reasons == {str(first.pk): "declined", str(second.pk): "declined"}


def test_a_decline_needs_a_known_reason(merchant_api):
    driver = factories.online_driver(*factories.east(0.3))
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    response = api_client_for(driver.user).post(f"/api/v1/offers/{offer.pk}/decline", {"reason": "meh"}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["fields"]
    assert factories.pending_offer(offer.delivery) == offer


def test_accept_one_millisecond_after_the_deadline_is_refused(merchant_api, clock):
    driver = factories.online_driver(*factories.east(0.3))
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    clock.shift(30.001)
    response = api_client_for(driver.user).post(f"/api/v1/offers/{offer.pk}/accept")
    assert response.status_code == 409
    assert response.json()["code"] == "offer_expired"
    offer.refresh_from_db()
    assert offer.status == "pending"  # the expiry job has not run, and the refusal changed nothing
    assert offers.expire_offer(offer.pk) is True
    offer.refresh_from_db()
    assert offer.status == "expired"


def test_accept_just_before_the_deadline_assigns(merchant_api, clock):
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    offer = factories.pending_offer(delivery)
    clock.shift(29.999)
    response = api_client_for(driver.user).post(f"/api/v1/offers/{offer.pk}/accept")
    assert response.status_code == 200
    assert response.json()["status"] == "assigned"
    assert response.json()["dropoff"]["phone"] == "+351 2"
    assert offers.expire_offer(offer.pk) is False  # the scheduled expiry, arriving late, changes nothing
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("assigned", driver)


def test_an_answered_offer_cannot_be_answered_again(merchant_api):
    driver = factories.online_driver(*factories.east(0.3))
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    api = api_client_for(driver.user)
    assert api.post(f"/api/v1/offers/{offer.pk}/accept").status_code == 200
    again = api.post(f"/api/v1/offers/{offer.pk}/accept")
    assert again.status_code == 409
    assert again.json()["code"] == "offer_not_pending"
    other = api_client_for(factories.online_driver(*factories.east(0.4)).user)
    assert other.post(f"/api/v1/offers/{offer.pk}/accept").status_code == 404  # not theirs


def test_expiry_before_the_deadline_does_nothing(merchant_api, clock):
    factories.online_driver(*factories.east(0.3))
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    clock.shift(29)
    assert offers.expire_offer(offer.pk) is False
    offer.refresh_from_db()
    assert offer.status == "pending"


def test_three_expired_offers_in_a_row_set_the_driver_offline(merchant_api, clock):
    sleepy = factories.online_driver(*factories.east(0.3))
    for n in range(3):
        delivery = factories.delivery_via_api(merchant_api, external_id=f"order-{n}")
        offer = factories.pending_offer(delivery)
        assert offer.driver == sleepy
        clock.shift(31)
        factories.ping(sleepy, *factories.east(0.3))
        assert offers.expire_offer(offer.pk)
    sleepy.refresh_from_db()
    assert sleepy.state == "offline"
    told = DriverMessage.objects.filter(driver=sleepy, type="driver.state").last()
    assert told.data["state"] == "offline" and told.data["reason"] == "missed_offers"
    assert "3 offers" in told.data["detail"]


def _missed_two(merchant_api, clock, driver):
    """Two offers to `driver` left to expire: its missed-offer count is 2."""
    for n in range(2):
        offer = factories.pending_offer(factories.delivery_via_api(merchant_api, external_id=f"missed-{n}"))
        clock.shift(31)
        factories.ping(driver, *factories.east(0.3))
        offers.expire_offer(offer.pk)
    driver.refresh_from_db()
    assert driver.missed_offers_in_row == 2


def test_accepting_resets_the_missed_offer_count(merchant_api, clock):
    driver = factories.online_driver(*factories.east(0.3))
    _missed_two(merchant_api, clock, driver)
    offers.accept_offer(
        factories.pending_offer(factories.delivery_via_api(merchant_api, external_id="kept")).pk,
        actor=Actor.driver(driver),
    )
    driver.refresh_from_db()
    assert (driver.state, driver.missed_offers_in_row) == ("busy", 0)


def test_accepting_with_room_left_resets_the_missed_offer_count(merchant_api, clock):
    driver = factories.online_driver(*factories.east(0.3), capacity=2)
    _missed_two(merchant_api, clock, driver)
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api, external_id="kept"))
    offers.accept_offer(offer.pk, actor=Actor.driver(driver))
    driver.refresh_from_db()
    assert (driver.state, driver.missed_offers_in_row) == ("available", 0)


def test_declining_resets_the_missed_offer_count(merchant_api, clock):
    driver = factories.online_driver(*factories.east(0.3))
    _missed_two(merchant_api, clock, driver)
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api, external_id="declined"))
    offers.decline_offer(offer.pk, actor=Actor.driver(driver), reason="busy")
    driver.refresh_from_db()
    assert (driver.state, driver.missed_offers_in_row) == ("available", 0)


def test_the_database_allows_one_pending_offer_per_delivery_and_per_driver(merchant_api):
    a, b = factories.online_driver(*factories.east(0.3)), factories.online_driver(*factories.east(0.5))
    delivery = factories.delivery_via_api(merchant_api)
    other = factories.delivery_via_api(merchant_api, external_id="order-2")  # offered to b
    fields = {"expires_at": timezone.now(), "distance_km": 1, "eta_to_pickup_s": 1, "estimated_pay": 1}
    with pytest.raises(IntegrityError), transaction.atomic():
        Offer.objects.create(delivery=delivery, driver=factories.DriverFactory(), **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Offer.objects.create(delivery=other, driver=a, **fields)
    assert Offer.objects.filter(status="pending").count() == 2
    assert {o.driver for o in Offer.objects.filter(status="pending")} == {a, b}


def test_ready_at_holds_the_offer_back_until_just_in_time(merchant_api, clock):
    driver = factories.online_driver(*factories.east(1.0))
    ready_at = timezone.now() + timedelta(minutes=20)
    delivery = factories.delivery_via_api(merchant_api, ready_at=ready_at.isoformat())
    assert delivery.status == "pending"
    travel = timedelta(seconds=1.0 * 1.3 / 15 * 3600)  # ~1 km by bicycle
    expected = ready_at - travel - timedelta(minutes=2)
    assert abs(delivery.dispatch_not_before - expected) < timedelta(seconds=3)
    from deliveries.services.ladder import dispatch_waiting

    assert dispatch_waiting() == 0
    clock.move_to(delivery.dispatch_not_before)
    factories.ping(driver, *factories.east(1.0))
    assert dispatch_waiting() == 1
    assert factories.pending_offer(delivery).driver == driver


def test_a_driver_whose_shift_ends_too_soon_is_skipped(merchant_api):
    from drivers.models import Shift

    leaving = factories.online_driver(*factories.east(0.3))
    Shift.objects.filter(driver=leaving).update(planned_end=timezone.now() + timedelta(minutes=3))
    staying = factories.online_driver(*factories.east(1.5))
    delivery = factories.delivery_via_api(merchant_api)
    assert factories.pending_offer(delivery).driver == staying
    decided = AuditEvent.objects.get(delivery_id=delivery.pk, type="dispatch.decided")
    assert {"driver_id": str(leaving.pk), "reason": "shift_ending"}.items() <= decided.payload["excluded"][0].items()


@pytest.mark.parametrize("passed_on_by", ["expiry", "decline"])
def test_the_customer_hears_a_status_once_when_the_offer_passes_to_the_next_driver(
    merchant_api, clock, django_capture_on_commit_callbacks, monkeypatch, passed_on_by
):
    """Passing an offer on is offered → pending → offered in one transaction: the tracking link hears the state it
    ends in, once, not a `status` per step that all say `offered`."""
    first, second = factories.online_driver(*factories.east(0.3)), factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    offer = factories.pending_offer(delivery)
    heard = []
    monkeypatch.setattr("deliveries.services.tracking.push_to_group", lambda group, envelope: heard.append(envelope))
    with django_capture_on_commit_callbacks(execute=True):
        if passed_on_by == "expiry":
            clock.shift(31)
            assert offers.expire_offer(offer.pk) is True
        else:
            offers.decline_offer(offer.pk, actor=Actor.driver(first), reason="busy")
    assert factories.pending_offer(delivery).driver == second
    assert [(message["type"], message["data"]["status"]) for message in heard] == [("status", "offered")]


def test_a_third_miss_expired_on_its_way_to_being_withdrawn_sets_the_driver_offline_at_the_stale_sweep(
    merchant_api, clock, ops_user
):
    """Ops reassign the delivery after the third offer's deadline, before the expiry job ran: the offer is expired and
    counted as a miss, but the rule was applied only by the expiry job, and the driver stayed online."""
    driver = factories.online_driver(*factories.east(0.3))
    _missed_two(merchant_api, clock, driver)
    third = factories.pending_offer(factories.delivery_via_api(merchant_api, external_id="third"))
    clock.shift(31)
    factories.ping(driver, *factories.east(0.3))
    send_back_to_dispatch(third.delivery_id, actor=Actor.ops(ops_user))
    third.refresh_from_db()
    driver.refresh_from_db()
    assert (third.status, driver.missed_offers_in_row) == ("expired", 3)

    mark_stale_drivers()
    driver.refresh_from_db()
    assert driver.state == "offline"
    told = DriverMessage.objects.filter(driver=driver, type="driver.state").last()
    assert (told.data["state"], told.data["reason"]) == ("offline", "missed_offers")
