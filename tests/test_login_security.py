"""Logging in: failures limited per client address (which a client cannot choose by sending X-Forwarded-For), per
username from one address and per username from all, on the API and the admin alike; tokens expire, and logout
revokes them."""

import secrets
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import make_password
from django.utils import timezone
from rest_framework.test import APIClient

from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "secret-pass-123"


@pytest.fixture(autouse=True)
def _quick_password_checks(settings):
    """A password check costs ~1 s on a busy machine with the real hasher, and these tests log in dozens of
    times within the limits' one-minute window: a failed login of an unknown user hashes the attempt with the
    first hasher (quick here); test users keep their real hash, checked with the default hashers after it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


def _address() -> str:
    """A client address of this test alone: throttle counts live in the cache (Redis with REDIS_URL), which
    outlives a test and a test run."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def _quick_hash() -> str:
    """PASSWORD hashed with the first (quick) hasher: for the tests that check a password dozens of times."""
    return make_password(PASSWORD, hasher="md5")


def _login(client, username: str, password: str = PASSWORD, **meta):
    return client.post("/api/v1/auth/token", {"username": username, "password": password}, format="json", **meta)


def test_forty_logins_with_forty_forwarded_for_values_are_throttled():
    client, peer = APIClient(), _address()
    statuses = [
        _login(
            client, f"nobody-{secrets.token_hex(4)}", "wrong", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=f"10.9.{n}.1"
        ).status_code
        for n in range(40)
    ]
    assert statuses[:30] == [401] * 30
    assert set(statuses[30:]) == {429}
    refused = _login(client, "nobody-else", "wrong", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR="10.9.99.1")
    assert refused.json()["code"] == "throttled"
    assert "available in" in refused.json()["detail"]


def test_behind_a_trusted_proxy_the_address_it_saw_is_the_one_limited(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}  # DRF reloads its settings
    client, proxy, attacker = APIClient(), _address(), _address()
    for n in range(30):
        # The client may send any X-Forwarded-For; the proxy appends the address it saw.
        forwarded = f"{_address()}, {attacker}"
        assert _login(client, f"x-{n}", "wrong", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=forwarded).status_code == 401
    blocked = _login(client, "x-last", "wrong", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"{_address()}, {attacker}")
    assert blocked.status_code == 429
    other = _login(client, "x-other", "wrong", REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=_address())
    assert other.status_code == 401  # another client behind the same proxy has a budget of its own


def test_one_address_guessing_a_username_is_held_back_and_the_accounts_owner_is_not(clock):
    user = factories.UserFactory(username=f"target-{secrets.token_hex(4)}", is_staff=True, password=_quick_hash())
    guesser = _address()
    statuses = [_login(APIClient(), user.username, "guess", REMOTE_ADDR=guesser).status_code for _ in range(12)]
    assert statuses == [401] * 10 + [429, 429]
    # The right password is refused too from there while the limit holds: guessing gains nothing.
    assert _login(APIClient(), user.username, REMOTE_ADDR=guesser).status_code == 429
    assert _login(APIClient(), user.username, REMOTE_ADDR=_address()).status_code == 200


def test_one_username_is_limited_whatever_the_address(clock):
    """Guesses spread over many addresses, a few from each, count against the username's own budget (50/min).
    (The clock stands still: on a loaded machine 51 logins can take longer than the limit's minute.)"""
    user = factories.UserFactory(username=f"target-{secrets.token_hex(4)}", is_staff=True, password=_quick_hash())
    statuses = [_login(APIClient(), user.username, "guess", REMOTE_ADDR=_address()).status_code for _ in range(51)]
    assert statuses == [401] * 50 + [429]
    assert _login(APIClient(), user.username, REMOTE_ADDR=_address()).status_code == 429


def test_a_fleet_logging_in_behind_one_address_is_not_held_up_but_failures_still_count(client, zones):
    """Only failed logins count against the limits: forty drivers starting a shift on a depot's Wi-Fi all get in,
    on the API and the admin's form, and a driver on two phones too; the failures from that address still do."""
    depot, quick_hash = _address(), _quick_hash()
    drivers = [factories.DriverFactory(user__password=quick_hash).user for _ in range(40)]
    assert {_login(APIClient(), user.username, REMOTE_ADDR=depot).status_code for user in drivers} == {200}
    assert {_login(APIClient(), drivers[0].username, REMOTE_ADDR=_address()).status_code for _ in range(12)} == {200}
    ops = factories.OpsUserFactory(username=f"ops-{secrets.token_hex(4)}", password=quick_hash)
    for _ in range(12):
        signed_in = client.post("/admin/login/", {"username": ops.username, "password": PASSWORD}, REMOTE_ADDR=depot)
        assert signed_in.status_code == 302
        client.logout()

    failures = [_login(APIClient(), f"nobody-{n}", "wrong", REMOTE_ADDR=depot).status_code for n in range(31)]
    assert failures == [401] * 30 + [429]


def test_a_body_that_does_not_parse_is_still_a_clear_400():
    response = APIClient().post(
        "/api/v1/auth/token", data="{not json", content_type="application/json", REMOTE_ADDR=_address()
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_the_admin_login_form_is_limited_too(client):
    peer = _address()
    statuses = [
        client.post(
            "/admin/login/",
            {"username": f"nobody-{secrets.token_hex(4)}", "password": "wrong"},
            REMOTE_ADDR=peer,
            HTTP_X_FORWARDED_FOR=f"10.8.{n}.1",
        ).status_code
        for n in range(32)
    ]
    assert statuses[:30] == [200] * 30  # the form again, with its error
    assert statuses[30:] == [429, 429]
    page = client.post("/admin/login/", {"username": "a", "password": "b"}, REMOTE_ADDR=peer)
    assert "Too many login attempts" in page.content.decode()


def test_the_admin_and_the_api_share_a_usernames_budget(client):
    user = factories.OpsUserFactory(username=f"ops-{secrets.token_hex(4)}", password=_quick_hash())
    guesser = _address()
    for _ in range(5):
        client.post("/admin/login/", {"username": user.username, "password": "guess"}, REMOTE_ADDR=guesser)
    for _ in range(5):
        _login(APIClient(), user.username, "guess", REMOTE_ADDR=guesser)
    assert _login(APIClient(), user.username, REMOTE_ADDR=guesser).status_code == 429


def test_a_token_carries_its_expiry_and_is_refused_after_it(zones, clock):
    driver = factories.DriverFactory()
    client = APIClient()
    login = _login(client, driver.user.username, REMOTE_ADDR=_address()).json()
    assert login["role"] == "driver"
    assert login["expires_at"] == "2026-12-25T12:00:00Z"  # 30 days, the drivers' default

    client.credentials(HTTP_AUTHORIZATION=f"Token {login['token']}")
    clock.shift(timedelta(days=30) - timedelta(seconds=1))
    assert client.get("/api/v1/driver/me").status_code == 200
    clock.shift(1)
    expired = client.get("/api/v1/driver/me")
    assert expired.status_code == 401
    assert expired.json()["code"] == "token_expired"

    fresh = _login(APIClient(), driver.user.username, REMOTE_ADDR=_address()).json()
    assert fresh["token"] != login["token"]
    assert fresh["expires_at"] == "2027-01-24T12:00:00Z"
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh['token']}")
    assert client.get("/api/v1/driver/me").status_code == 200


@pytest.mark.parametrize(("role", "days"), [("merchant", 365), ("ops", 1)])
def test_other_roles_have_their_own_lifetime(zones, clock, role, days):
    user = factories.MerchantFactory().user if role == "merchant" else factories.OpsUserFactory()
    login = _login(APIClient(), user.username, REMOTE_ADDR=_address()).json()
    assert login["role"] == role
    assert login["expires_at"] == (timezone.now() + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def test_a_console_session_lasts_as_long_as_an_ops_token(client, clock):
    """The console's session lasted Django's two weeks while an ops API token lasts a working day (TOKEN_DAYS_OPS,
    1): a session left open on a shared ops workstation, or its cookie taken, kept the console for 14 days."""
    user = factories.OpsUserFactory(username=f"ops-{secrets.token_hex(4)}", password=make_password(PASSWORD))
    assert _login(APIClient(), user.username, REMOTE_ADDR=_address()).json()["role"] == "ops"
    login = client.post("/admin/login/", {"username": user.username, "password": PASSWORD}, REMOTE_ADDR=_address())
    assert login.status_code == 302
    clock.shift(timedelta(days=1) - timedelta(seconds=1))
    assert client.get("/admin/").status_code == 200
    clock.shift(1)
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_logout_revokes_the_token_it_is_called_with(zones):
    merchant = factories.MerchantFactory()
    client = APIClient()
    token = _login(client, merchant.user.username, REMOTE_ADDR=_address()).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/deliveries").status_code == 200

    logout = client.post("/api/v1/auth/logout")
    assert logout.status_code == 204
    assert logout.content == b""
    after = client.get("/api/v1/deliveries")
    assert after.status_code == 401
    assert after.json()["code"] == "authentication_failed"
    assert "log in again" in after.json()["detail"]  # what an app shows, on this phone or another that shared it
    assert client.post("/api/v1/auth/logout").status_code == 401  # nothing left to revoke


def test_a_new_password_revokes_the_token_issued_under_the_old_one(zones):
    merchant = factories.MerchantFactory()
    client = APIClient()
    token = _login(client, merchant.user.username, REMOTE_ADDR=_address()).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/deliveries").status_code == 200

    merchant.user.set_password("a-new-pass-456")  # as ops do it in the admin after a leak
    merchant.user.save()

    assert client.get("/api/v1/deliveries").status_code == 401
    assert _login(APIClient(), merchant.user.username, REMOTE_ADDR=_address()).status_code == 401
    fresh = _login(APIClient(), merchant.user.username, "a-new-pass-456", REMOTE_ADDR=_address()).json()["token"]
    assert fresh != token
    client.credentials(HTTP_AUTHORIZATION=f"Token {fresh}")
    assert client.get("/api/v1/deliveries").status_code == 200
    merchant.user.save()  # saved without a new password (the admin's other fields): the token stays
    assert client.get("/api/v1/deliveries").status_code == 200


def test_the_schema_documents_expiry_and_logout():
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    token_output = schema["components"]["schemas"]["TokenOutput"]
    assert {"token", "role", "expires_at"} <= set(token_output["properties"])
    assert token_output["properties"]["expires_at"]["format"] == "date-time"
    logout = schema["paths"]["/api/v1/auth/logout"]["post"]
    assert {code for code in logout["responses"] if code.startswith("2")} == {"204"}  # and the errors


def test_behind_a_trusted_proxy_two_clients_logging_in_with_the_same_key_get_their_own_answers(zones, settings):
    """A login has no credential to tell its caller by, so its Idempotency-Key is the client address's: the
    address the trusted proxy saw, as for the limits, not the proxy's own, which every client behind it shares."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client, proxy = APIClient(), _address()

    answers = [
        _login(
            client,
            factories.DriverFactory().user.username,
            factories.PASSWORD,
            REMOTE_ADDR=proxy,
            HTTP_X_FORWARDED_FOR=_address(),
            HTTP_IDEMPOTENCY_KEY="login",
        )
        for _ in range(2)
    ]

    assert [answer.status_code for answer in answers] == [200, 200], answers[1].content
    assert answers[0].json()["token"] != answers[1].json()["token"]
