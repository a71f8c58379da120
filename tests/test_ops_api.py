"""The ops REST endpoints beside the admin: escalations and live zone pressure."""

import pytest

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import EscalationLevel, Offer
from deliveries.services.ladder import run_ladder
from deliveries.services.offers import decline_offer
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def escalated(merchant_api, clock):
    # The only driver in reach declines: the time ladder opens the escalation at 5 min.
    driver = factories.online_driver(*factories.CENTRO)
    merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    decline_offer(Offer.objects.get(driver=driver).pk, actor=Actor.driver(driver), reason="busy")
    clock.shift(300)
    run_ladder()


def test_ops_list_acknowledge_and_resolve_an_escalation(ops_api, escalated):
    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["level"], e["reason"], e["status"]) for e in listed] == [(EscalationLevel.ALERT, "unassigned", "open")]
    pk = listed[0]["id"]

    acknowledged = ops_api.post(f"/api/v1/ops/escalations/{pk}/acknowledge")
    assert acknowledged.status_code == 200
    assert acknowledged.json()["status"] == "acknowledged"
    assert ops_api.post(f"/api/v1/ops/escalations/{pk}/resolve", {}, format="json").status_code == 400
    resolved = ops_api.post(f"/api/v1/ops/escalations/{pk}/resolve", {"note": "called the shop"}, format="json")
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolution_note"] == "called the shop"
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["results"] == []
    again = ops_api.post(f"/api/v1/ops/escalations/{pk}/acknowledge")
    assert (again.status_code, again.json()["code"]) == (409, "escalation_resolved")
    trail = AuditEvent.objects.filter(subject_id=pk).values_list("type", "actor_kind")
    assert list(trail) == [
        ("escalation.opened", "system"),
        ("escalation.acknowledged", "ops"),
        ("escalation.resolved", "ops"),
    ]


def test_escalations_are_for_ops_only(merchant_api, escalated):
    assert merchant_api.get("/api/v1/ops/escalations").status_code == 403
    assert merchant_api.get("/api/v1/ops/zones").status_code == 403


def test_zones_with_live_pressure(ops_api, merchant_api):
    merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    zones = {z["code"]: z for z in ops_api.get("/api/v1/ops/zones").json()}
    assert set(zones) == {"centro", "norte", "este"}
    assert (zones["centro"]["open_deliveries"], zones["centro"]["band"]) == (1, "critical")
    assert (zones["norte"]["open_deliveries"], zones["norte"]["band"]) == (0, "normal")
