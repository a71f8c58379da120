"""The audit trail is complete enough to rebuild a delivery: replaying its `delivery.*` events in order
arrives at its current status and driver (SPEC 3.2)."""

import pytest

from core.models import AuditEvent
from deliveries.models import Delivery
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def accept_pending_offer(driver) -> str:
    api = api_client_for(driver.user)
    offers = api.get("/api/v1/driver/offers?status=pending").json()["results"]
    assert len(offers) == 1, offers
    accepted = api.post(f"/api/v1/offers/{offers[0]['id']}/accept")
    assert accepted.status_code == 200, accepted.content
    return accepted.json()["id"]


def replay(delivery_id) -> tuple[str, str | None, list[str]]:
    """Fold the delivery's lifecycle events; fail on the first gap in the from → to chain."""
    status, driver_id, path = "", None, []
    for event in AuditEvent.objects.filter(delivery_id=delivery_id, type__startswith="delivery.").order_by("id"):
        assert event.from_state == status, f"{event.type}: from {event.from_state!r}, replayed {status!r}"
        status = event.to_state
        driver_id = str(event.driver_id) if event.driver_id else None
        path.append(status)
    return status, driver_id, path


def test_replaying_a_delivered_delivery_with_a_release_rebuilds_it(merchant_api, clock):
    first = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    second = factories.online_driver(38.72, -9.145, name="Ben Costa")
    created = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    delivery_id = created.json()["id"]
    assert created.json()["status"] == "offered"

    assert accept_pending_offer(first) == delivery_id
    clock.shift(30)
    released = api_client_for(first.user).post(
        f"/api/v1/deliveries/{delivery_id}/release", {"reason": "flat tyre"}, format="json"
    )
    assert released.status_code == 200, released.content
    assert accept_pending_offer(second) == delivery_id  # the first driver is not offered it again
    second_api = api_client_for(second.user)
    assert second_api.post(f"/api/v1/deliveries/{delivery_id}/pickup").status_code == 200
    clock.shift(600)
    assert second_api.post(f"/api/v1/deliveries/{delivery_id}/deliver", {}, format="json").status_code == 200

    status, driver_id, path = replay(delivery_id)
    delivery = Delivery.objects.get(pk=delivery_id)
    assert (status, driver_id) == (delivery.status, str(delivery.driver_id)) == ("delivered", str(second.pk))
    assert path == ["pending", "offered", "assigned", "pending", "offered", "assigned", "picked_up", "delivered"]
    assert delivery.reassignment_count == 1
