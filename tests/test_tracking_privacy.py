"""SPEC 4.1: the public tracking link shows no address beyond the dropoff street line. A customer's flat, floor,
postcode and town stay off the page and out of its JSON, whoever the link is forwarded to."""

import secrets

import pytest
from rest_framework.test import APIClient

from core.audit import Actor
from deliveries.models import Delivery
from deliveries.services.offers import accept_offer
from deliveries.services.progress import pick_up_delivery
from tests import factories

pytestmark = pytest.mark.django_db
BEYOND_THE_STREET = ["3º esq", "1000-001", "Lisboa"]


def _customer() -> APIClient:
    """A client address of this test alone: throttle counts outlive a test in Redis."""
    return APIClient(REMOTE_ADDR=f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}")


@pytest.mark.parametrize("address", ["Rua B 2, 3º esq, 1000-001 Lisboa", "Rua B 2\n3º esq\n1000-001 Lisboa"])
def test_the_tracking_link_shows_only_the_dropoff_street_line(merchant_api, address):
    rider = factories.online_driver(*factories.east(0.5), name="Rita Rodrigues")
    payload = factories.delivery_payload()
    payload["dropoff"]["address"] = address
    created = merchant_api.post("/api/v1/deliveries", payload, format="json")
    assert created.status_code == 201, created.content
    delivery = Delivery.objects.get(pk=created.json()["id"])
    accept_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(rider))
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))  # on its way: when the link shows the most
    token = delivery.tracking_token

    page = _customer().get(f"/t/{token}")
    assert page.status_code == 200
    tracked = _customer().get(f"/api/v1/track/{token}")
    assert tracked.status_code == 200
    html = page.content.decode()
    for private in BEYOND_THE_STREET:
        assert private not in html
        assert private not in tracked.content.decode()
    assert "To Rua B 2<" in html  # the street line, and nothing after it
