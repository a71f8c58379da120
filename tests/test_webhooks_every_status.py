"""API.md, Merchant: a webhook is POSTed to the merchant's URL "for every status change", not only for the first
and the last: a merchant follows the whole life of a delivery from its webhooks."""

import json

import pytest

from deliveries.models import WebhookDelivery
from deliveries.tasks import send_webhook
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(receivers):
    return receivers()


def _received(endpoint) -> list[tuple[str, str]]:
    """Send the queued webhooks as the worker would, in the order they were written; what the merchant got."""
    for webhook in WebhookDelivery.objects.order_by("created_at"):
        send_webhook.apply(args=[str(webhook.pk)])
    bodies = [json.loads(request.body) for request in endpoint.requests]
    return [(body["type"], body["status"]) for body in bodies]


def _data_of_last(endpoint) -> dict:
    return json.loads(endpoint.requests[-1].body)["data"]


def _accepted_by(driver, delivery):
    """The delivery's offer, accepted by `driver` through the driver app's API."""
    app = api_client_for(driver.user)
    answer = app.post(f"/api/v1/offers/{factories.pending_offer(delivery).pk}/accept", format="json")
    assert answer.status_code == 200, answer.content
    return app


def test_a_delivered_delivery_posts_one_webhook_per_status_change_in_order(zones, endpoint):
    """Created, offered, accepted, picked up, delivered: the merchant hears each step once, in order, each body
    naming the status the delivery moved to."""
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.delivery_via_api(api_client_for(merchant.user))
    app = _accepted_by(driver, delivery)
    for step in ("pickup", "deliver"):
        answer = app.post(f"/api/v1/deliveries/{delivery.pk}/{step}", {}, format="json")
        assert answer.status_code == 200, answer.content

    assert _received(endpoint) == [
        ("delivery.pending", "pending"),
        ("delivery.offered", "offered"),
        ("delivery.assigned", "assigned"),
        ("delivery.picked_up", "picked_up"),
        ("delivery.delivered", "delivered"),
    ]


def test_a_failed_delivery_posts_its_failure_after_its_pickup(zones, endpoint):
    """The driver could not deliver: the merchant hears the failure too, after the pickup."""
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.delivery_via_api(api_client_for(merchant.user))
    app = _accepted_by(driver, delivery)
    assert app.post(f"/api/v1/deliveries/{delivery.pk}/pickup", {}, format="json").status_code == 200
    answer = app.post(f"/api/v1/deliveries/{delivery.pk}/fail", {"reason": "nobody home"}, format="json")
    assert answer.status_code == 200, answer.content

    assert _received(endpoint) == [
        ("delivery.pending", "pending"),
        ("delivery.offered", "offered"),
        ("delivery.assigned", "assigned"),
        ("delivery.picked_up", "picked_up"),
        ("delivery.failed", "failed"),
    ]
    assert _data_of_last(endpoint) == {"outcome_reason": "nobody home"}  # no GET needed to tell the customer why


def test_a_merchant_cancelling_an_offered_delivery_hears_it_cancelled_never_pending_again(zones, endpoint):
    """The merchant cancels while a driver is being asked: the offer is withdrawn and the delivery ends. It never
    needed a driver again, so no `pending` webhook follows the merchant's own cancel (it could even arrive after
    the `cancelled` one and put the order back to "looking for a driver"), and its timeline says so too."""
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    factories.online_driver(*factories.east(0.5))
    api = api_client_for(merchant.user)
    delivery = factories.delivery_via_api(api)
    assert delivery.status == "offered"
    answer = api.post(f"/api/v1/deliveries/{delivery.pk}/cancel", {"reason": "out of stock"}, format="json")
    assert answer.status_code == 200, answer.content

    assert _received(endpoint) == [
        ("delivery.pending", "pending"),
        ("delivery.offered", "offered"),
        ("delivery.cancelled", "cancelled"),
    ]
    assert _data_of_last(endpoint) == {"outcome_reason": "out of stock"}
    timeline = api.get(f"/api/v1/deliveries/{delivery.pk}").json()["events"]
    assert [(event["from_state"], event["to_state"]) for event in timeline] == [
        ("", "pending"),
        ("pending", "offered"),
        ("offered", "cancelled"),
    ]
