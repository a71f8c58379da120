"""ADR-025: the driver availability state machine, breaks, shifts and stale drivers."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import AuditEvent
from deliveries.models import Offer, OfferStatus
from deliveries.services import dispatch
from deliveries.services.availability import mark_stale_drivers
from drivers.models import Break, DriverMessage, Shift
from tests import factories
from tests.conftest import api_client_for
from tests.plans import whole_table_reads

pytestmark = pytest.mark.django_db


def set_state(driver, state):
    return api_client_for(driver.user).post("/api/v1/driver/availability", {"state": state}, format="json")


def test_going_online_starts_a_shift_and_offline_ends_it(zones, clock):
    driver = factories.DriverFactory()
    assert set_state(driver, "available").json()["state"] == "available"
    told = DriverMessage.objects.filter(driver=driver, type="driver.state").values_list("data__state", flat=True)
    assert list(told) == ["available"]  # every availability change is on the driver's stream
    clock.shift(3600)
    assert set_state(driver, "offline").json()["state"] == "offline"
    shift = Shift.objects.get(driver=driver)
    assert shift.ended_at - shift.started_at == timedelta(hours=1)
    went_offline = AuditEvent.objects.filter(driver_id=driver.pk, type="driver.state_changed").last()
    assert (went_offline.from_state, went_offline.to_state) == ("available", "offline")
    assert went_offline.payload["seconds_in_previous"] == 3600


@pytest.mark.parametrize(
    ("start", "requested", "allowed"),
    [("offline", "on_break", "available"), ("busy", "on_break", "offline"), ("busy", "available", "offline")],
)
def test_transitions_that_are_not_allowed_are_refused_and_change_nothing(
    merchant_api, ops_api, start, requested, allowed
):
    driver = factories.DriverFactory()
    if start == "busy":
        driver = factories.online_driver(*factories.east(0.3))
        factories.delivery_via_api(merchant_api)
        offer = Offer.objects.get(driver=driver, status=OfferStatus.PENDING)
        api_client_for(driver.user).post(f"/api/v1/offers/{offer.pk}/accept")
    events = AuditEvent.objects.count()
    response = set_state(driver, requested)
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    assert allowed in response.json()["detail"]
    driver.refresh_from_db()
    assert driver.state == start
    assert AuditEvent.objects.count() == events


def test_unknown_state_is_bad_input(zones):
    response = set_state(factories.DriverFactory(), "busy")
    assert response.status_code == 400
    assert "state" in response.json()["fields"]


def test_asking_for_the_current_state_changes_nothing(zones):
    driver = factories.DriverFactory()
    response = set_state(driver, "offline")
    assert (response.status_code, response.json()["state"]) == (200, "offline")
    assert not AuditEvent.objects.filter(driver_id=driver.pk).exists()


def test_a_break_withdraws_the_pending_offer_and_passes_it_on(merchant_api):
    resting = factories.online_driver(*factories.east(0.3))
    other = factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    first = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    assert first.driver == resting
    assert set_state(resting, "on_break").json()["state"] == "on_break"
    first.refresh_from_db()
    assert (first.status, first.withdraw_reason) == ("withdrawn", "driver_on_break")
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == other
    told = DriverMessage.objects.filter(driver=resting, type="offer.withdrawn").get()
    assert (told.data["reason"], told.data["cause"]) == ("superseded", "driver_on_break")  # API.md's three reasons


@pytest.mark.parametrize("requested", ["on_break", "offline"])
def test_an_offer_past_its_deadline_expires_when_the_driver_leaves_before_the_expiry_job(
    merchant_api, clock, requested
):
    # SPEC 2.1: the deadline rules, not the expiry job. An offer the driver let run out, then a break (or going
    # offline) before the job ran: the app is told it expired, and the driver is not asked for it again.
    resting = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    assert offer.driver == resting
    clock.shift((offer.expires_at - timezone.now()).total_seconds() + 1)

    assert set_state(resting, requested).json()["state"] == requested

    offer.refresh_from_db()
    assert offer.status == "expired"
    told = DriverMessage.objects.filter(driver=resting, type="offer.withdrawn").get()
    assert told.data["reason"] == "expired"
    resting.refresh_from_db()
    assert resting.missed_offers_in_row == 1
    assert set_state(resting, "available").json()["state"] == "available"
    factories.ping(resting, *factories.east(0.3))
    dispatch.dispatch(delivery.pk)
    assert not Offer.objects.filter(delivery=delivery, driver=resting, status=OfferStatus.PENDING).exists()


def test_going_offline_withdraws_the_pending_offer_and_passes_it_on_at_once(merchant_api):
    leaving = factories.online_driver(*factories.east(0.3))
    other = factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    first = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    assert first.driver == leaving

    assert set_state(leaving, "offline").json()["state"] == "offline"

    first.refresh_from_db()
    assert (first.status, first.withdraw_reason) == ("withdrawn", "driver_offline")
    delivery.refresh_from_db()
    assert delivery.status == "offered"  # not left for the dispatch sweep
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == other
    assert DriverMessage.objects.filter(driver=other, type="offer.created").exists()


def test_a_break_over_the_limit_is_flagged(zones, clock):
    driver = factories.online_driver(*factories.east(0.3))
    set_state(driver, "on_break")
    clock.shift(31 * 60)
    assert set_state(driver, "available").json()["state"] == "available"
    assert Break.objects.get(driver=driver).over_limit
    assert AuditEvent.objects.filter(driver_id=driver.pk, type="driver.break_over_limit").exists()


def test_a_break_running_past_the_limit_is_flagged_when_the_limit_passes(zones, clock, admin_client):
    from deliveries.tasks import flag_long_breaks

    driver = factories.online_driver(*factories.east(0.3))
    set_state(driver, "on_break")
    clock.shift(30 * 60)
    assert flag_long_breaks() == 0  # 30 min is the limit, not over it
    clock.shift(1)
    assert flag_long_breaks() == 1
    running = Break.objects.get(driver=driver)
    assert (running.over_limit, running.ended_at) == (True, None)
    flagged = AuditEvent.objects.get(driver_id=driver.pk, type="driver.break_over_limit")
    assert flagged.payload == {"seconds": 1801, "limit_s": 1800, "ended": False}
    listed = admin_client.get("/admin/drivers/break/", {"over_limit__exact": "1"}).context["cl"].result_list
    assert list(listed) == [running]
    clock.shift(600)
    assert flag_long_breaks() == 0  # once
    set_state(driver, "available")
    assert AuditEvent.objects.filter(driver_id=driver.pk, type="driver.break_over_limit").count() == 1
    assert Break.objects.get(driver=driver).over_limit


@pytest.mark.postgres
def test_the_minutes_break_sweep_reads_only_the_breaks_still_running(zones, clock):
    """Every break ever taken is kept (1-3 a driver a day): the sweep for breaks past the limit, every minute, reads
    the ones still running, not the whole table."""
    from deliveries.tasks import flag_long_breaks

    driver = factories.online_driver(*factories.east(0.3))
    set_state(driver, "on_break")
    set_state(driver, "available")
    set_state(driver, "on_break")
    clock.shift(31 * 60)
    flagged = []
    assert whole_table_reads(lambda: flagged.append(flag_long_breaks()), {"drivers_break"}) == []
    assert flagged == [1]


def test_going_offline_while_carrying_a_picked_up_delivery_is_refused(merchant_api):
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    api = api_client_for(driver.user)
    api.post(f"/api/v1/offers/{Offer.objects.get(delivery=delivery).pk}/accept")
    api.post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    response = set_state(driver, "offline")
    assert response.status_code == 409
    assert "picked-up" in response.json()["detail"]
    driver.refresh_from_db()
    assert driver.state == "busy"


@pytest.mark.parametrize("requested", ["on_break", "available", "offline"])
def test_a_refusal_lists_only_states_the_driver_could_go_to_now(merchant_api, requested):
    """Carrying a picked-up delivery, a busy driver cannot go offline either: the 409 must not offer it."""
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    api = api_client_for(driver.user)
    api.post(f"/api/v1/offers/{Offer.objects.get(delivery=delivery).pk}/accept")
    api.post(f"/api/v1/deliveries/{delivery.pk}/pickup")

    response = set_state(driver, requested)

    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")
    detail = response.json()["detail"]
    assert "offline" not in detail
    assert detail == (
        "A driver who is busy can go to no other state while carrying a picked-up delivery: deliver it first."
    )
    driver.refresh_from_db()
    assert driver.state == "busy"


def test_going_offline_with_a_picked_up_delivery_and_room_for_more_names_what_the_driver_can_do(merchant_api):
    """API.md: a refused availability change is a 409 `invalid_transition` with the allowed transitions in `detail`.
    With room for another job, a driver carrying a picked-up delivery is available and may still take a break."""
    driver = factories.online_driver(*factories.east(0.3), capacity=2)
    delivery = factories.delivery_via_api(merchant_api)
    api = api_client_for(driver.user)
    api.post(f"/api/v1/offers/{factories.pending_offer(delivery).pk}/accept")
    api.post(f"/api/v1/deliveries/{delivery.pk}/pickup")

    response = set_state(driver, "offline")

    assert (response.status_code, response.json()["code"]) == (409, "invalid_transition")
    assert response.json()["detail"] == "A driver who is available can go to: on_break."
    driver.refresh_from_db()
    assert driver.state == "available"


def test_a_driver_back_online_with_a_picked_up_delivery_is_busy_not_free(merchant_api, clock, settings):
    """Gone stale while carrying a picked-up delivery, a driver keeps it (ops are alerted). Coming back online with
    it at capacity they are busy, as they were: not free supply for the zone, and not free to take a break."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    api = api_client_for(driver.user)
    api.post(f"/api/v1/offers/{Offer.objects.get(delivery=delivery).pk}/accept")
    api.post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    clock.shift(91)
    assert mark_stale_drivers() == 1

    assert set_state(driver, "available").json()["state"] == "busy"

    assert api.get("/api/v1/driver/me").json()["state"] == "busy"
    assert set_state(driver, "on_break").status_code == 409
    api.post(f"/api/v1/deliveries/{delivery.pk}/deliver", {}, format="json")
    driver.refresh_from_db()
    assert driver.state == "available"


def test_a_planned_shift_that_has_ended_is_not_joined_and_blocks_nothing(merchant_api, clock):
    """Yesterday's planned shift, never worked, was joined by going online today: its end, long past, ruled the
    driver out of every offer as ending their shift. Going online starts a shift of its own instead."""
    driver = factories.DriverFactory()
    now = timezone.now()
    missed = Shift.objects.create(
        driver=driver, planned_start=now - timedelta(days=1, hours=3), planned_end=now - timedelta(days=1)
    )
    set_state(driver, "available")
    driver.refresh_from_db()
    factories.ping(driver, *factories.east(0.3))

    delivery = factories.delivery_via_api(merchant_api)

    assert Offer.objects.get(delivery=delivery).driver == driver
    missed.refresh_from_db()
    assert missed.started_at is None
    assert Shift.objects.open().get(driver=driver).planned_end is None


def test_a_plan_that_ends_before_it_starts_is_refused_in_the_console(admin_client, zones):
    """It was saved ("added successfully") and then never joined: the driver's planned end bounded nothing."""
    driver = factories.DriverFactory()
    plan = {"driver": driver.pk, "planned_start_0": "2026-11-28", "planned_start_1": "18:00:00"}
    plan |= {"planned_end_0": "2026-11-28", "planned_end_1": "10:00:00"}
    response = admin_client.post(reverse("admin:drivers_shift_add"), plan)
    assert response.status_code == 200
    assert "The planned end must be after the planned start." in response.content.decode()
    empty = admin_client.post(reverse("admin:drivers_shift_add"), plan | {"planned_end_1": "18:00:00"})
    assert "The planned end must be after the planned start." in empty.content.decode()  # a plan of no time at all
    assert not Shift.objects.filter(driver=driver).exists()


def test_going_online_shortly_before_a_planned_shift_starts_that_shift(zones, clock):
    driver = factories.DriverFactory()
    now = timezone.now()
    planned = Shift.objects.create(
        driver=driver, planned_start=now + timedelta(minutes=10), planned_end=now + timedelta(hours=4)
    )

    set_state(driver, "available")

    assert list(Shift.objects.filter(driver=driver)) == [planned]
    planned.refresh_from_db()
    assert planned.started_at == now and planned.planned_end == now + timedelta(hours=4)


def test_drivers_silent_for_90_seconds_go_offline_and_are_told(zones, clock, settings):
    settings.RELAY_LOCATION_REDIS_URL = ""
    silent = factories.online_driver(*factories.east(0.3))
    chatty = factories.online_driver(*factories.east(0.6))
    clock.shift(89)
    factories.ping(chatty, *factories.east(0.6))
    assert mark_stale_drivers() == 0
    clock.shift(1)
    assert mark_stale_drivers() == 1
    silent.refresh_from_db()
    chatty.refresh_from_db()
    assert (silent.state, chatty.state) == ("offline", "available")
    told = DriverMessage.objects.filter(driver=silent, type="driver.state").last()
    assert told.data["reason"] == "stale"


def test_a_change_the_driver_did_not_make_does_not_reset_the_stale_limit(merchant_api, clock, settings):
    """SPEC 2.2: offline when pings stop for 90 s. The merchant cancelling the driver's delivery frees the driver
    (busy -> available) but is no sign of life from them: they went on counting as alive 90 s from then."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    api_client_for(driver.user).post(f"/api/v1/offers/{factories.pending_offer(delivery).pk}/accept")
    clock.shift(80)  # the driver's pings stopped at 0
    assert merchant_api.post(f"/api/v1/deliveries/{delivery.pk}/cancel", {"reason": "x"}).status_code == 200
    clock.shift(10)
    assert mark_stale_drivers() == 1
    driver.refresh_from_db()
    assert driver.state == "offline"


def test_a_driver_who_just_came_online_gets_the_full_stale_limit(zones, clock, settings):
    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = factories.online_driver(*factories.east(0.3), seen_at=timezone.now() - timedelta(minutes=9))
    assert mark_stale_drivers() == 0
    clock.shift(91)
    assert mark_stale_drivers() == 1
    driver.refresh_from_db()
    assert driver.state == "offline"


def test_me_shows_state_shift_pending_offer_and_active_deliveries(merchant_api):
    driver = factories.online_driver(*factories.east(0.3), capacity=2)
    api = api_client_for(driver.user)
    first = factories.delivery_via_api(merchant_api)
    me = api.get("/api/v1/driver/me").json()
    assert me["state"] == "available" and me["current_shift"]["started_at"]
    assert me["pending_offer"]["delivery"]["id"] == str(first.pk)
    api.post(f"/api/v1/offers/{me['pending_offer']['id']}/accept")
    me = api.get("/api/v1/driver/me").json()
    assert me["pending_offer"] is None
    assert [d["id"] for d in me["active_deliveries"]] == [str(first.pk)]
    assert me["state"] == "available"  # one of two places taken
