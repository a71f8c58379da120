"""The console in its viewer's time zone (core/time_zones.py): the browser names it in a cookie, every console
page shows its times in it and says which, and a time typed there is read in it. The API keeps UTC."""

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.audit import Actor
from core.time_zones import COOKIE
from deliveries.services.reassignment import force_assign
from drivers.models import DriverMessage, Shift
from tests import factories
from tests.test_admin_deliveries import messages_of
from tests.test_reassignment import picked_up

pytestmark = pytest.mark.django_db

LOS_ANGELES = "America/Los_Angeles"  # 2026-11-25 12:00 UTC (the clock fixture) is 04:00 there
LA = zoneinfo.ZoneInfo(LOS_ANGELES)


def _change_page(delivery) -> str:
    return reverse("admin:deliveries_delivery_change", args=[delivery.pk])


def test_the_console_shows_times_in_the_viewers_zone_and_names_it_while_the_api_keeps_utc(
    admin_client, merchant, merchant_api, clock
):
    delivery = factories.new_delivery(merchant, "soup")
    admin_client.cookies[COOKIE] = LOS_ANGELES

    page = admin_client.get(_change_page(delivery)).content.decode()
    assert "Times in America/Los_Angeles" in page
    assert "Nov. 25, 2026, 4 a.m." in page  # created at
    assert "<td>2026-11-25 04:00:00</td>" in page  # the timeline
    listed = admin_client.get(reverse("admin:deliveries_delivery_changelist")).content.decode()
    assert "Times in America/Los_Angeles" in listed
    assert "Nov. 25, 2026, 4 a.m." in listed

    # DRF writes a time in the active zone: the console's must not reach the API, even with the cookie.
    merchant_api.cookies[COOKIE] = LOS_ANGELES
    assert merchant_api.get(f"/api/v1/deliveries/{delivery.pk}").json()["created_at"] == "2026-11-25T12:00:00Z"


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "localtime", "../../../etc/passwd", "", "America/Los Angeles"])
def test_a_zone_the_server_does_not_know_falls_back_to_utc(admin_client, merchant, clock, name):
    delivery = factories.new_delivery(merchant, "soup")
    admin_client.cookies[COOKIE] = name
    page = admin_client.get(_change_page(delivery))
    assert page.status_code == 200
    assert "Times in UTC" in page.content.decode()
    assert "Nov. 25, 2026, noon" in page.content.decode()


def test_a_shift_typed_in_the_viewers_zone_is_stored_as_that_instant(admin_client, zones, clock):
    driver = factories.DriverFactory()
    admin_client.cookies[COOKIE] = LOS_ANGELES
    answer = admin_client.post(
        reverse("admin:drivers_shift_add"),
        {
            "driver": driver.pk,
            "planned_start_0": "2026-11-26",
            "planned_start_1": "09:00:00",
            "planned_end_0": "2026-11-26",
            "planned_end_1": "17:00:00",
        },
    )
    assert answer.status_code == 302
    shift = Shift.objects.get(driver=driver)
    assert (shift.planned_start, shift.planned_end) == (
        datetime(2026, 11, 26, 17, tzinfo=UTC),
        datetime(2026, 11, 27, 1, tzinfo=UTC),
    )


def test_a_delivery_held_for_the_food_says_until_when_in_the_viewers_zone(admin_client, merchant, clock):
    factories.online_driver(*factories.CENTRO, name="Ana Silva")
    soup = factories.new_delivery(merchant, "soup", ready_at="2026-11-25T13:00:00+00:00")
    soup.refresh_from_db()
    until = f"{timezone.localtime(soup.dispatch_not_before, LA):%H:%M:%S}"
    admin_client.cookies[COOKIE] = LOS_ANGELES
    url = reverse("admin:deliveries_delivery_changelist")
    response = admin_client.post(url, {"action": "dispatch_again", "_selected_action": [soup.pk]}, follow=True)
    said = f"soup: not offered: held until {until} America/Los_Angeles so the driver does not wait for the food."
    assert messages_of(response) == [said]
    assert f"held until {until} America/Los_Angeles" in admin_client.get(_change_page(soup)).content.decode()


def test_times_the_console_writes_itself_are_in_the_viewers_zone(admin_client, merchant, clock):
    """The driver page's deliveries and a shift's name were formatted in Python, in UTC, whatever the page said."""
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")  # her shift starts now
    factories.assigned_delivery(merchant, ana, "soup")
    admin_client.cookies[COOKIE] = LOS_ANGELES

    driver_page = admin_client.get(reverse("admin:drivers_driver_change", args=[ana.pk])).content.decode()
    assert "<td>2026-11-25 04:00</td>" in driver_page  # "Since", of the delivery she carries
    shift = Shift.objects.get(driver=ana)
    shift_page = admin_client.get(reverse("admin:drivers_shift_change", args=[shift.pk])).content.decode()
    assert "Ana Silva 2026-11-25 04:00" in shift_page


def test_an_overdue_dropoff_is_said_in_the_viewers_zone_and_stays_utc_in_the_api(
    admin_client, merchant_api, ops_api, clock, settings
):
    """The ladder's "Dropoff was due at 12:21 UTC" is the API's and the webhooks' text; the console says it in its
    viewer's zone, on the escalation's page and in the delivery's timeline."""
    from deliveries import eta
    from deliveries.services.ladder import run_ladder

    settings.RELAY_LOCATION_REDIS_URL = ""
    _, delivery, _ = picked_up(merchant_api)
    due = timezone.now() + timedelta(
        seconds=eta.travel_seconds(delivery.distance_km, "bicycle") + eta.DROPOFF_SERVICE_S
    )
    clock.shift((due - timezone.now()).total_seconds() + 16 * 60)
    run_ladder()

    [escalation] = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert escalation["detail"] == f"Dropoff was due at {due:%H:%M} UTC"
    admin_client.cookies[COOKIE] = LOS_ANGELES
    said = f"Dropoff was due at {timezone.localtime(due, LA):%H:%M} America/Los_Angeles"
    page = admin_client.get(reverse("admin:deliveries_escalation_change", args=[escalation["id"]])).content.decode()
    assert said in page and "UTC" not in page
    assert said in admin_client.get(_change_page(delivery)).content.decode()


def test_a_bulk_action_from_a_list_shown_in_the_hour_a_clock_change_repeats_still_sees_what_changed(
    admin_client, admin_user, merchant, clock
):
    """The list carries when it was shown, for a second "Go" to leave alone what the first changed. Written as a
    wall-clock time, 01:30 on the night Los Angeles leaves summer time was read back as ambiguous, so not at all, and
    the second "Reassign" withdrew the offer the first had made."""
    clock.move_to("2026-11-01 08:30:00+00:00")  # 01:30 PDT; an hour later it is 01:30 PST
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    delivery = factories.new_delivery(merchant, "order-1")
    force_assign(delivery.pk, driver_id=ana.pk, actor=Actor.ops(admin_user))
    ben = factories.online_driver(*factories.CENTRO, name="Ben Costa")
    admin_client.cookies[COOKIE] = LOS_ANGELES
    listed = admin_client.get(reverse("admin:deliveries_delivery_changelist")).content.decode()
    listed_at = re.search(r'name="listed_at" value="([^"]+)"', listed).group(1)
    clock.shift(5)
    go = {"action": "send_back_to_dispatch", "_selected_action": [delivery.pk], "listed_at": listed_at}

    first = admin_client.post(reverse("admin:deliveries_delivery_changelist"), go, follow=True)
    clock.shift(1)
    second = admin_client.post(reverse("admin:deliveries_delivery_changelist"), go, follow=True)

    assert messages_of(first) == ["Sent back to dispatch and offered to a driver: 1 of 1."]
    assert messages_of(second) == ["order-1: changed since the list was shown: nothing was done."]
    assert factories.pending_offer(delivery).driver == ben


def test_a_shift_typed_in_the_hour_a_clock_change_repeats_is_refused_saying_why(admin_client, zones, clock):
    """01:30 happens twice on the night Los Angeles leaves summer time: which one is asked, nothing saved."""
    driver = factories.DriverFactory()
    admin_client.cookies[COOKIE] = LOS_ANGELES
    typed = {"planned_start_0": "2026-11-01", "planned_start_1": "01:30:00"}
    answer = admin_client.post(reverse("admin:drivers_shift_add"), {"driver": driver.pk} | typed)
    assert answer.status_code == 200
    assert "couldn’t be interpreted in time zone America/Los_Angeles" in answer.content.decode()
    assert not Shift.objects.filter(driver=driver).exists()


def test_what_a_console_action_sends_a_drivers_app_keeps_utc(admin_client, merchant, clock):
    """A console action sends what the API does (an offer to the driver's app, stored for `resume`): DRF wrote its
    times in the console viewer's zone ("...-08:00") where API.md says UTC, and the app's stream kept them so."""
    delivery = factories.new_delivery(merchant, "lonely")
    ana = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    admin_client.cookies[COOKIE] = LOS_ANGELES
    url = reverse("admin:deliveries_delivery_changelist")
    answer = admin_client.post(url, {"action": "dispatch_again", "_selected_action": [delivery.pk]}, follow=True)
    assert messages_of(answer) == ["Offered to a driver: 1 of 1."]

    offer = factories.pending_offer(delivery)
    stored = DriverMessage.objects.get(driver=ana, type="offer.created")
    assert stored.data["expires_at"] == offer.expires_at.isoformat().replace("+00:00", "Z")
