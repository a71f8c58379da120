"""SPEC 2.1, who is offered a delivery: not a driver whose shift ends before they could finish the job (to the
pickup *and on to the dropoff*), and not a driver who declined or let expire an offer of it; a driver whose offer
was withdrawn (they went on a break) did neither, and is asked again."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEvent
from deliveries.models import Delivery
from deliveries.services.ladder import dispatch_waiting
from drivers.models import DriverMessage, Shift
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def set_state(driver, state):
    answer = api_client_for(driver.user).post("/api/v1/driver/availability", {"state": state}, format="json")
    assert answer.status_code == 200, answer.content


def _offers_to(driver) -> int:
    return DriverMessage.objects.filter(driver=driver, type="offer.created").count()


def test_a_driver_who_could_reach_the_pickup_but_not_finish_the_dropoff_before_the_shift_ends_is_not_offered_it(
    merchant_api, clock
):
    """Leaving is 0.5 km from pickup (about 2.6 min by bicycle, plus 2 min at the store and 2 at the door) and
    the dropoff is 2 km further on (about 10.4 min): their shift ends in 10 min, enough for everything but the
    ride to the dropoff. The delivery goes to a driver farther away whose shift has no planned end."""
    leaving = factories.online_driver(*factories.east(0.5), name="Leo Leaving")
    Shift.objects.filter(driver=leaving).update(planned_end=timezone.now() + timedelta(minutes=10))
    staying = factories.online_driver(*factories.east(1.5), name="Sara Staying")
    delivery = factories.delivery_via_api(merchant_api, dropoff=factories.east(2.0))
    assert delivery.distance_km == pytest.approx(2.0, abs=0.05)

    assert _offers_to(leaving) == 0
    assert factories.pending_offer(delivery).driver == staying
    decided = AuditEvent.objects.get(delivery_id=delivery.pk, type="dispatch.decided").payload
    assert {e["driver_id"]: e["reason"] for e in decided["excluded"]} == {str(leaving.pk): "shift_ending"}


def test_a_driver_whose_offer_was_withdrawn_for_a_break_is_offered_the_delivery_again(merchant_api, clock):
    """Offered the delivery, the driver takes a break (the offer is withdrawn: they neither declined nor let it
    expire). Back from the break, the delivery, still waiting, is offered to them again."""
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.delivery_via_api(merchant_api)
    assert factories.pending_offer(delivery).driver == driver
    set_state(driver, "on_break")
    delivery.refresh_from_db()
    assert delivery.status == "pending"  # nobody else in reach

    clock.shift(60)
    set_state(driver, "available")
    factories.ping(driver, *factories.east(0.5))
    dispatch_waiting()

    assert _offers_to(driver) == 2
    assert Delivery.objects.get(pk=delivery.pk).status == "offered"
    assert factories.pending_offer(delivery).driver == driver
