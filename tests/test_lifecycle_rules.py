"""SPEC 1, lifecycle: `failed` (the driver could not deliver) comes only after pickup; before it, a driver who
cannot do the job hands it back (release), they do not fail it."""

import pytest

from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def test_a_delivery_not_picked_up_yet_cannot_be_failed(merchant, clock):
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.assigned_delivery(merchant, driver)

    answer = api_client_for(driver.user).post(
        f"/api/v1/deliveries/{delivery.pk}/fail", {"reason": "nobody home"}, format="json"
    )

    assert answer.status_code == 409, answer.content
    assert answer.json()["code"] == "invalid_transition"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver, delivery.finished_at) == ("assigned", driver, None)
