"""Who may do what (issue 13): every operation of the OpenAPI schema, as driver A, driver B, merchant A, merchant
B, ops, view-only staff and anonymous, against party A's objects. API.md: 401 not authenticated, 403 wrong role,
404 another party's object (never revealed). A new operation in the schema without a row here fails the test."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from core.audit import Actor
from core.permissions import OPS_APPS
from deliveries.models import EscalationLevel
from deliveries.services.common import lock_delivery
from deliveries.services.escalations import raise_escalation_locked
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

ROLES = ["driver_a", "driver_b", "merchant_a", "merchant_b", "ops", "staff_view_only", "anonymous"]
DRIVERS, MERCHANTS = {"driver_a", "driver_b"}, {"merchant_a", "merchant_b"}
NOW = datetime.now(UTC).isoformat()
BODIES = {
    "/api/v1/auth/token": {"username": "nobody", "password": "wrong"},
    "/api/v1/deliveries": factories.delivery_payload("matrix-new"),
    "/api/v1/deliveries/{id}/cancel": {"reason": "changed"},
    "/api/v1/deliveries/{id}/fail": {"reason": "closed"},
    "/api/v1/deliveries/{id}/release": {"reason": "flat"},
    "/api/v1/driver/availability": {"state": "available"},
    "/api/v1/driver/locations": {"points": [{"lat": 38.715, "lng": -9.14, "recorded_at": NOW}]},
    "/api/v1/offers/{id}/decline": {"reason": "busy"},
    "/api/v1/ops/escalations/{id}/resolve": {"note": "seen"},
}


def allowed(path: str, method: str) -> set[str]:
    """The roles an operation is for; A's objects are reached by the A of that role only."""
    if path == "/api/v1/auth/token":
        return set(ROLES)
    if path == "/api/v1/auth/logout":
        return set(ROLES) - {"anonymous"}
    if path.startswith("/api/v1/ops/"):
        return {"ops", "staff_view_only"} if method == "get" else {"ops"}
    if path.startswith(("/api/v1/driver/", "/api/v1/offers/")) or path.split("/")[-1] in (
        "pickup",
        "deliver",
        "fail",
        "release",
    ):
        return DRIVERS
    return MERCHANTS


def expected(role: str, path: str, method: str) -> str:
    """ "ok" (anything but 401/403/404/5xx: the caller reached the operation), or the refusal's status."""
    if path.startswith("/api/v1/track/"):
        return "ok"  # public: the link's token is the only credential, whoever holds it
    if role == "anonymous" or path == "/api/v1/auth/token":  # the login's body holds a wrong password
        return "401"
    if role not in allowed(path, method):
        return "403"
    if "{id}" in path and role.endswith("_b"):
        return "404"
    return "ok"


@pytest.fixture
def world(zones):
    """Party A's objects: merchant A's delivery, assigned to driver A, a second one offered to A, an escalation."""
    merchant_a, merchant_b = factories.MerchantFactory(), factories.MerchantFactory()
    driver_a = factories.online_driver(*factories.CENTRO, capacity=2)
    driver_b = factories.online_driver(*factories.east(4.5))
    carried = factories.new_delivery(merchant_a, "matrix-carried")
    from deliveries.services.offers import accept_offer

    accept_offer(factories.pending_offer(carried).pk, actor=Actor.driver(driver_a))
    offered = factories.new_delivery(merchant_a, "matrix-offered")
    offer = factories.pending_offer(offered)
    assert offer.driver == driver_a
    with transaction.atomic():
        escalation = raise_escalation_locked(
            lock_delivery(offered.pk), level=EscalationLevel.ALERT, reason="unassigned", detail="matrix"
        )
    staff = factories.UserFactory(is_staff=True)
    staff.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=OPS_APPS, codename__startswith="view_")
    )
    clients = {
        "driver_a": api_client_for(driver_a.user),
        "driver_b": api_client_for(driver_b.user),
        "merchant_a": api_client_for(merchant_a.user),
        "merchant_b": api_client_for(merchant_b.user),
        "ops": api_client_for(factories.OpsUserFactory()),
        "staff_view_only": api_client_for(staff),
        "anonymous": APIClient(),
    }
    ids = {
        "/api/v1/track/": carried.tracking_token,
        "/api/v1/offers/": offer.pk,
        "/api/v1/ops/escalations/": escalation.pk,
        "/api/v1/ops/deliveries/": offered.pk,
        "/api/v1/deliveries/": carried.pk,
    }
    return clients, ids


def operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = [(path, method) for path, ops in schema["paths"].items() for method in ops if method in ("get", "post")]
    # Logout last: it ends the caller's token for the rest of the walk.
    return sorted(found, key=lambda op: op[0] == "/api/v1/auth/logout")


def _concrete(path: str, ids: dict) -> str:
    for prefix, object_id in ids.items():
        if path.startswith(prefix) and "{" in path:
            return path.replace("{id}", str(object_id)).replace("{token}", str(object_id))
    return path


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_as_every_role(world, role):
    clients, ids = world
    client = clients[role]
    seen = {}
    for path, method in operations():
        url = _concrete(path, ids)
        body = BODIES.get(path, {}) | ({"username": f"nobody-{role}"} if path == "/api/v1/auth/token" else {})
        answer = client.get(url) if method == "get" else client.post(url, body, format="json")
        want = expected(role, path, method)
        got = (
            "ok" if answer.status_code not in (401, 403, 404) and answer.status_code < 500 else str(answer.status_code)
        )
        seen[f"{method.upper()} {path}"] = (want, got, answer.status_code)
        if answer.status_code >= 400:
            assert set(answer.json()) >= {"code", "detail"}, (path, answer.content)
    wrong = {op: (want, got, code) for op, (want, got, code) in seen.items() if want != got}
    assert wrong == {}, wrong
