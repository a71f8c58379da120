"""Every POST of API.md under `Idempotency-Key` (issue 13): replayed ten times one after another and ten times at
once it has one effect, every replay is the first answer byte for byte, and another caller sending the same key
and body never gets the first caller's answer."""

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Delivery, EscalationLevel
from deliveries.services.common import lock_delivery
from deliveries.services.escalations import raise_escalation_locked
from deliveries.services.offers import accept_offer
from deliveries.services.progress import pick_up_delivery
from tests import factories
from tests.conftest import api_client_for
from tests.test_races import run_together

REPLAYS = 10


@dataclass
class Call:
    api: APIClient
    path: str
    body: dict | None
    other: APIClient  # another caller of the same role, with objects of its own

    def post(self, key: str, api: APIClient | None = None):
        return (api or self.api).post(self.path, self.body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    def post_first(self, key: str):
        """The first call under `key`, which succeeds (`_call` sets it up so)."""
        first = self.post(key)
        assert first.status_code < 300, first.content
        return first


def effect() -> tuple:
    """What a POST can change: audit events (every action writes some), deliveries and API tokens."""
    return AuditEvent.objects.count(), Delivery.objects.count(), Token.objects.count()


def _offered(merchant):
    driver = factories.online_driver(*factories.CENTRO)
    delivery = factories.new_delivery(merchant, f"order-{driver.pk}")
    return driver, delivery, factories.pending_offer(delivery)


def _assigned(merchant, *, picked_up=False):
    driver, delivery, offer = _offered(merchant)
    accept_offer(offer.pk, actor=Actor.driver(driver))
    if picked_up:
        pick_up_delivery(delivery.pk, actor=Actor.driver(driver))
    return driver, delivery


def _escalation(delivery):
    from django.db import transaction

    with transaction.atomic():
        return raise_escalation_locked(
            lock_delivery(delivery.pk), level=EscalationLevel.ALERT, reason="unassigned", detail="test"
        )


def _call(name: str) -> Call:
    """The POST called `name` in API.md, set up so that its first call succeeds."""
    merchant, other_merchant = factories.MerchantFactory(), factories.MerchantFactory()
    merchant_api, other_merchant_api = api_client_for(merchant.user), api_client_for(other_merchant.user)
    ops_api, other_ops_api = api_client_for(factories.OpsUserFactory()), api_client_for(factories.OpsUserFactory())
    if name == "auth/token":
        user = factories.UserFactory()
        factories.DriverFactory(user=user)
        other = APIClient(REMOTE_ADDR="10.9.9.9")
        return Call(
            APIClient(), "/api/v1/auth/token", {"username": user.username, "password": factories.PASSWORD}, other
        )
    if name == "auth/logout":
        return Call(merchant_api, "/api/v1/auth/logout", None, other_merchant_api)
    if name == "deliveries":
        return Call(merchant_api, "/api/v1/deliveries", factories.delivery_payload("order-x"), other_merchant_api)
    if name == "cancel":
        _, delivery, _ = _offered(merchant)
        return Call(merchant_api, f"/api/v1/deliveries/{delivery.pk}/cancel", {"reason": "x"}, other_merchant_api)
    if name == "ops/reassign":
        _, delivery = _assigned(merchant)
        return Call(ops_api, f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, other_ops_api)
    if name in ("ops/acknowledge", "ops/resolve"):
        _, delivery, _ = _offered(merchant)
        escalation = _escalation(delivery)
        path = f"/api/v1/ops/escalations/{escalation.pk}/{name.split('/')[1]}"
        return Call(ops_api, path, {"note": "seen"} if name == "ops/resolve" else None, other_ops_api)
    # Driver routes: the other caller is a driver with a job of its own.
    if name in ("accept", "decline"):
        driver, delivery, offer = _offered(merchant)
        other = api_client_for(_offered(merchant)[0].user)
        body = {"reason": "busy"} if name == "decline" else None
        return Call(api_client_for(driver.user), f"/api/v1/offers/{offer.pk}/{name}", body, other)
    if name in ("pickup", "release", "deliver", "fail"):
        driver, delivery = _assigned(merchant, picked_up=name in ("deliver", "fail"))
        other = api_client_for(_assigned(merchant)[0].user)
        body = {"reason": "closed"} if name in ("release", "fail") else {}
        return Call(api_client_for(driver.user), f"/api/v1/deliveries/{delivery.pk}/{name}", body, other)
    if name == "availability":
        driver = factories.online_driver(*factories.CENTRO)
        other = api_client_for(factories.online_driver(*factories.CENTRO).user)
        return Call(api_client_for(driver.user), "/api/v1/driver/availability", {"state": "on_break"}, other)
    if name == "locations":
        driver = factories.online_driver(*factories.CENTRO)
        other = api_client_for(factories.online_driver(*factories.CENTRO).user)
        point = {"lat": 38.716, "lng": -9.141, "recorded_at": datetime.now(UTC).isoformat()}
        return Call(api_client_for(driver.user), "/api/v1/driver/locations", {"points": [point]}, other)
    raise AssertionError(name)


POSTS = [
    "auth/token",
    "auth/logout",
    "deliveries",
    "cancel",
    "availability",
    "locations",
    "accept",
    "decline",
    "pickup",
    "deliver",
    "fail",
    "release",
    "ops/reassign",
    "ops/acknowledge",
    "ops/resolve",
]


def test_every_post_route_of_the_schema_is_covered():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    posts = {path for path, operations in schema["paths"].items() if "post" in operations}
    assert len(posts) == len(POSTS), sorted(posts)


@pytest.mark.django_db
@pytest.mark.parametrize("name", POSTS)
def test_ten_replays_in_a_row_have_one_effect(zones, name):
    call = _call(name)
    first = call.post_first("key-1")
    after_first = effect()

    replays = [call.post("key-1") for _ in range(REPLAYS - 1)]

    if name == "auth/logout":  # the token is gone: replays get what any request with it gets
        assert {r.status_code for r in replays} == {401}
        assert effect() == after_first
        return
    assert {(r.status_code, bytes(r.content)) for r in replays} == {(first.status_code, bytes(first.content))}
    assert all(r["Idempotent-Replayed"] == "true" for r in replays)
    assert effect() == after_first


@pytest.mark.django_db
@pytest.mark.parametrize("name", POSTS)
def test_another_caller_with_the_same_key_never_gets_the_first_answer(zones, name):
    call = _call(name)
    call.post_first("shared-key")

    theirs = call.post("shared-key", api=call.other)

    assert "Idempotent-Replayed" not in theirs  # answered for them (the same account's token is the same token)
    names_an_object = any(len(part) == 36 for part in call.path.split("/"))
    if names_an_object and not call.path.startswith("/api/v1/ops/"):  # ops see every object
        assert theirs.status_code == 404, theirs.content  # another party's object


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", POSTS)
def test_ten_at_once_have_one_effect(zones, name):
    call = _call(name)
    before = effect()
    answers = run_together(*[lambda: call.post("key-1") for _ in range(REPLAYS)])

    assert not [a for a in answers if isinstance(a, Exception)], answers
    if name == "auth/logout":  # the first to revoke the token wins; later ones find it gone
        answers = [a for a in answers if a.status_code != 401]
    done = [a for a in answers if a.status_code != 409]
    waiting = [a for a in answers if a.status_code == 409]
    assert {a.json()["code"] for a in waiting} <= {"request_in_progress"}
    assert len({(a.status_code, bytes(a.content)) for a in done}) == 1, [a.content for a in done]
    assert done[0].status_code < 300
    once = effect()
    if name != "auth/logout":
        assert call.post("key-1").content == done[0].content
    assert effect() == once
    # And that one effect is the effect of one call: the same call under a fresh key changes what one call does.
    assert once != before or name == "locations"
    connection.close()


@pytest.mark.django_db
def test_a_revoked_token_gets_no_replay(zones):
    """The stored answer belongs to a credential that still works: after logout (or expiry, or the account's
    suspension) a replay is refused as any request with that token is, 401."""
    call = _call("deliveries")
    assert call.post("key-1").status_code == 201
    assert call.api.post("/api/v1/auth/logout").status_code == 204

    replay = call.post("key-1")

    assert replay.status_code == 401, replay.content
    assert replay.json()["code"] in ("authentication_failed", "token_expired")


@pytest.mark.django_db
def test_a_login_retried_after_logout_gets_a_token_that_works(zones):
    """A login's stored answer is not replayed once its token is revoked: the app would be handed a token every
    request refuses. The login runs again, and its new answer is then the one replayed."""
    login = _call("auth/token")
    first = login.post("key-1").json()["token"]
    assert api_client_for_token(first).post("/api/v1/auth/logout").status_code == 204

    again = login.post("key-1")

    assert again.status_code == 200, again.content
    token = again.json()["token"]
    assert token != first
    assert api_client_for_token(token).get("/api/v1/driver/me").status_code == 200
    assert login.post("key-1").content == again.content  # stored again, and replayed while it works


def api_client_for_token(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return api
