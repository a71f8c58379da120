"""An offer that could not be pushed because the channel layer was down (found by the production soak: a 2-minute
Redis outage set 12 drivers offline for "missed" offers their apps never heard) is marked unheard, and its expiry
is not counted as the driver's miss: SPEC 2.1 sets offline a driver who *lets* 3 offers in a row expire. It still
expires on time and passes the delivery on; the app sees it over REST, or through `resume` once Redis is back."""

import asyncio

import httpx
import pytest
import redis
from channels.db import database_sync_to_async
from rest_framework.authtoken.models import Token

from config.asgi import application
from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Offer
from deliveries.services import offers
from drivers.models import DriverMessage
from tests import factories
from tests.conftest import api_client_for


class _DownLayer:
    async def group_send(self, *args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


@pytest.fixture
def layer_down(monkeypatch):
    monkeypatch.setattr("drivers.notifications.get_channel_layer", _DownLayer)


def _offer_that_expires(merchant_api, clock, capture, driver, external_id: str) -> Offer:
    with capture(execute=True):  # the push, after the commit
        delivery = factories.delivery_via_api(merchant_api, external_id=external_id)
    offer = factories.pending_offer(delivery)
    assert offer.driver == driver
    clock.shift(31)
    factories.ping(driver, *factories.east(0.3))
    assert offers.expire_offer(offer.pk)
    offer.refresh_from_db()
    return offer


@pytest.mark.django_db
def test_offers_expiring_unheard_while_the_layer_is_down_do_not_set_the_driver_offline(
    merchant_api, clock, django_capture_on_commit_callbacks, layer_down
):
    driver = factories.online_driver(*factories.east(0.3))
    for n in range(3):
        offer = _offer_that_expires(merchant_api, clock, django_capture_on_commit_callbacks, driver, f"unheard-{n}")
        assert (offer.status, offer.unheard) == ("expired", True)
        expired = AuditEvent.objects.get(type="offer.expired", subject_id=str(offer.pk))
        assert expired.payload == {"unheard": True}
    driver.refresh_from_db()
    assert (driver.state, driver.missed_offers_in_row) == ("available", 0)
    assert not DriverMessage.objects.filter(driver=driver, type="driver.state", data__state="offline").exists()
    # The app can still see an unheard offer by asking, as after a reconnect.
    with django_capture_on_commit_callbacks(execute=True):
        delivery = factories.delivery_via_api(merchant_api, external_id="seen-by-asking")
    listed = api_client_for(driver.user).get("/api/v1/driver/offers?status=pending").json()["results"]
    assert [o["delivery"]["id"] for o in listed] == [str(delivery.pk)]


@pytest.mark.django_db
def test_an_offer_pushed_and_left_to_expire_still_counts(
    merchant_api, clock, django_capture_on_commit_callbacks, monkeypatch
):
    driver = factories.online_driver(*factories.east(0.3))
    with monkeypatch.context() as down:
        down.setattr("drivers.notifications.get_channel_layer", _DownLayer)
        _offer_that_expires(merchant_api, clock, django_capture_on_commit_callbacks, driver, "unheard")
    offer = _offer_that_expires(merchant_api, clock, django_capture_on_commit_callbacks, driver, "heard")
    assert offer.unheard is False
    assert AuditEvent.objects.get(type="offer.expired", subject_id=str(offer.pk)).payload == {}
    driver.refresh_from_db()
    assert driver.missed_offers_in_row == 1


@pytest.mark.django_db
def test_an_offer_answered_before_its_push_failed_is_left_as_answered(merchant_api, django_capture_on_commit_callbacks):
    from deliveries.services.dispatch import offer_unheard

    driver = factories.online_driver(*factories.east(0.3))
    with django_capture_on_commit_callbacks(execute=True):
        offer = factories.pending_offer(factories.delivery_via_api(merchant_api))
    offers.decline_offer(offer.pk, actor=Actor.driver(driver), reason="busy")
    offer_unheard(offer.pk)
    offer.refresh_from_db()
    assert (offer.status, offer.unheard) == ("declined", False)


@pytest.mark.django_db(transaction=True)
async def test_a_request_whose_offer_push_fails_marks_the_offer_unheard(zones, settings, layer_down):
    """In a server the push goes out from the event loop after the answer (core/loop_sends.py); its failure
    still reaches the offer."""
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_SSL_REDIRECT = False
    await database_sync_to_async(factories.online_driver)(*factories.CENTRO)
    merchant = await database_sync_to_async(factories.MerchantFactory)()
    token = await database_sync_to_async(lambda: Token.objects.get_or_create(user=merchant.user)[0].key)()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as c:
        response = await c.post(
            "/api/v1/deliveries",
            json=factories.delivery_payload("pushed-while-down"),
            headers={"Authorization": f"Token {token}"},
        )
    assert response.status_code == 201, response.text

    @database_sync_to_async
    def unheard() -> bool:
        return Offer.objects.get(delivery_id=response.json()["id"]).unheard

    async with asyncio.timeout(10):
        while not await unheard():
            await asyncio.sleep(0.02)


@pytest.mark.django_db
def test_an_unheard_offer_past_its_deadline_when_the_driver_takes_a_break_is_not_a_miss(
    merchant_api, clock, django_capture_on_commit_callbacks, layer_down
):
    """The break comes before the expiry job: the offer expires then (SPEC 2.1, the deadline rules), and as with
    the job, an offer the app never heard is not counted against the driver."""
    driver = factories.online_driver(*factories.east(0.3))
    with django_capture_on_commit_callbacks(execute=True):
        delivery = factories.delivery_via_api(merchant_api, external_id="unheard-then-break")
    offer = factories.pending_offer(delivery)
    clock.shift(31)
    answer = api_client_for(driver.user).post("/api/v1/driver/availability", {"state": "on_break"}, format="json")
    assert answer.json()["state"] == "on_break"

    offer.refresh_from_db()
    assert (offer.status, offer.unheard) == ("expired", True)
    assert AuditEvent.objects.get(type="offer.expired", subject_id=str(offer.pk)).payload == {"unheard": True}
    driver.refresh_from_db()
    assert driver.missed_offers_in_row == 0
