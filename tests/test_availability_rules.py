"""SPEC 2.1 and 2.2, driver availability: missed offers are counted in a row within one spell online, and going
offline ends an open break, which is recorded with its length."""

from datetime import timedelta

import pytest

from deliveries.services import offers
from deliveries.services.availability import flag_long_breaks
from drivers.models import Break, DriverMessage
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def set_state(driver, state):
    answer = api_client_for(driver.user).post("/api/v1/driver/availability", {"state": state}, format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()["state"]


def _let_expire(merchant_api, clock, driver, external_id: str) -> None:
    """A new delivery is offered to `driver`, who lets the offer expire."""
    offer = factories.pending_offer(factories.delivery_via_api(merchant_api, external_id=external_id))
    assert offer.driver == driver
    clock.shift(31)
    factories.ping(driver, *factories.east(0.3))  # still there, just not answering
    assert offers.expire_offer(offer.pk)


def test_the_missed_offer_count_restarts_when_the_driver_comes_back_online(merchant_api, clock):
    """Set offline after 3 offers in a row expired, the driver goes online again: one more expired offer is the
    first of a new row, not the fourth, and they stay online."""
    sleepy = factories.online_driver(*factories.east(0.3))
    for n in range(3):
        _let_expire(merchant_api, clock, sleepy, f"missed-{n}")
    sleepy.refresh_from_db()
    assert sleepy.state == "offline"

    assert set_state(sleepy, "available") == "available"
    factories.ping(sleepy, *factories.east(0.3))
    _let_expire(merchant_api, clock, sleepy, "after-coming-back")

    sleepy.refresh_from_db()
    assert sleepy.state == "available"
    told = DriverMessage.objects.filter(driver=sleepy, type="driver.state").values_list("data__reason", flat=True)
    assert list(told).count("missed_offers") == 1  # told once, for the first row only


def test_going_offline_ends_an_open_break_with_its_length(zones, clock):
    """A driver on a 10-minute break goes offline: the break is recorded as ended then, 10 minutes long, and is
    not later flagged to ops as a break running past the limit."""
    driver = factories.online_driver(*factories.east(0.3))
    assert set_state(driver, "on_break") == "on_break"
    clock.shift(600)
    assert set_state(driver, "offline") == "offline"

    taken = Break.objects.get(driver=driver)
    assert (taken.ended_at, taken.seconds, taken.over_limit) == (taken.started_at + timedelta(minutes=10), 600, False)
    clock.shift(3600)
    assert flag_long_breaks() == 0
    taken.refresh_from_db()
    assert not taken.over_limit
