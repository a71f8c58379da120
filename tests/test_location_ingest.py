"""`POST /api/v1/driver/locations` through the ASGI application: plain pings are answered ahead of Django
(drivers/ingest.py), everything else exactly as Django answers it; revocation reaches the token cache at once."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import redis
from channels.db import DatabaseSyncToAsync
from django.db import OperationalError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from config.asgi import django_asgi_app
from core import throttling
from core.audit import Actor
from core.throttling import UserThrottle
from deliveries.services.availability import go_online, take_offline
from drivers import credentials, locations
from drivers.ingest import LocationIngest, parse_batch
from tests import factories
from tests.conftest import api_client_for, count_round_trips

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
PATH = "/api/v1/driver/locations"
URL = "http://127.0.0.1" + PATH


def _sync(fn):
    """ORM work from the async tests, in a thread of its own (as the ingest route does it)."""
    return DatabaseSyncToAsync(fn, thread_sensitive=False)


class Counting:
    """Django's ASGI app, counting the requests that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await django_asgi_app(scope, receive, send)


@pytest.fixture
def django_app(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
    settings.SECURE_SSL_REDIRECT = False
    credentials.cache.clear()
    yield Counting()
    credentials.cache.clear()


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=LocationIngest(app)))


def _point(**extra) -> dict:
    now = datetime.now(UTC).isoformat()
    return {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": now} | extra


def _online_driver():
    driver = factories.DriverFactory()
    go_online(driver.pk, actor=Actor.driver(driver))
    token, _ = Token.objects.get_or_create(user=driver.user)
    return driver, {"Authorization": f"Token {token.key}"}


def _indexed(driver) -> bool:
    hits = locations.nearest_drivers(*factories.CENTRO, radius_km=1, limit=10)
    return str(driver.pk) in {hit.driver_id for hit in hits}


async def test_a_plain_ping_is_indexed_without_reaching_django(zones, django_app):
    driver, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        first = await client.post(URL, json={"points": [_point(accuracy=5)]}, headers=auth)
        second = await client.post(URL, json={"points": [_point(), _point(speed=3.5, heading=90)]}, headers=auth)
    assert (first.status_code, first.json()) == (202, {"accepted": 1, "dropped": 0})
    assert (second.status_code, second.json()) == (202, {"accepted": 2, "dropped": 0})
    assert first.headers["content-type"] == "application/json"
    assert django_app.calls == 0
    assert await _sync(_indexed)(driver)


async def test_first_pings_arriving_together_share_one_read_of_their_tokens(zones, django_app, monkeypatch):
    """A process meets each driver's token once per cache lifetime (a cold one, all of them at once): the tokens
    missed together are read in one query, and each request still gets its own answer."""
    drivers = [await _sync(_online_driver)() for _ in range(3)]
    merchant = await _sync(factories.MerchantFactory)()
    merchant_token, _ = await _sync(Token.objects.get_or_create)(user=merchant.user)
    reads = []
    real_read = credentials._load_many

    async def counted(keys):
        reads.append(sorted(keys))
        return await real_read(keys)

    monkeypatch.setattr(credentials, "_load_many", counted)
    others = [{"Authorization": "Token nope"}, {"Authorization": f"Token {merchant_token.key}"}]
    async with _client(django_app) as client:
        answers = await asyncio.gather(
            *(client.post(URL, json={"points": [_point()]}, headers=auth) for auth in [a for _, a in drivers] + others)
        )
    assert [a.status_code for a in answers] == [202, 202, 202, 401, 403]
    assert len(reads) == 1 and len(reads[0]) == 5
    assert django_app.calls == 2  # the unknown token and the merchant: Django answers them
    for driver, _ in drivers:
        assert await _sync(_indexed)(driver)


async def test_pings_arriving_together_share_their_redis_round_trips(zones, django_app, monkeypatch):
    """Many drivers' pings on one event loop: the reads of one turn go to Redis together, then the writes, and
    each request still gets its own answer."""
    drivers = [await _sync(_online_driver)() for _ in range(4)]
    async with _client(django_app) as client:
        for _, auth in drivers:  # their tokens known to this process
            assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        round_trips = count_round_trips(monkeypatch)
        old = (timezone.now() - timedelta(hours=1)).isoformat()
        bodies = [{"points": [_point()]}, {"points": [_point(), _point()]}, {"points": [_point()]}]
        bodies.append({"points": [_point(recorded_at=old)]})
        answers = await asyncio.gather(
            *(client.post(URL, json=body, headers=auth) for body, (_, auth) in zip(bodies, drivers, strict=True))
        )
    assert [(a.status_code, a.json()) for a in answers] == [
        (202, {"accepted": 1, "dropped": 0}),
        (202, {"accepted": 2, "dropped": 0}),
        (202, {"accepted": 1, "dropped": 0}),
        (202, {"accepted": 0, "dropped": 1}),
    ]
    assert len(round_trips) == 2
    assert django_app.calls == 0


async def test_old_and_future_points_are_dropped_not_errors(zones, django_app):
    _, auth = await _sync(_online_driver)()
    old = (timezone.now() - timedelta(minutes=11)).isoformat()
    future = (timezone.now() + timedelta(minutes=5)).isoformat()
    async with _client(django_app) as client:
        answer = await client.post(
            URL, json={"points": [_point(recorded_at=old), _point(), _point(recorded_at=future)]}, headers=auth
        )
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "dropped": 2})
    assert django_app.calls == 0


BAD_BODIES = [
    {},
    {"points": []},
    {"points": [_point()] * 101},
    {"points": [_point(lat=91)]},
    {"points": [_point(lng="east")]},
    {"points": [_point(recorded_at="yesterday")]},
    {"points": [_point(recorded_at="2026-11-25T12:00:00")]},  # no offset: which zone's noon?
    {"points": [_point(heading=400)]},
    {"points": [_point(accuracy=-1)]},
    {"points": [{"lat": 38.7}]},
    {"points": "no"},
    [],
]


@pytest.mark.parametrize("body", BAD_BODIES)
async def test_bad_input_gets_exactly_the_answer_of_the_api(zones, django_app, body):
    driver, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        answer = await client.post(URL, json=body, headers=auth)
    expected = await _sync(lambda: api_client_for(driver.user).post(PATH, body, format="json"))()
    assert answer.status_code == expected.status_code == 400
    assert answer.json() == expected.json()
    assert answer.json()["code"] == "invalid"


async def test_a_time_without_its_offset_is_refused_not_read_as_utc(zones, django_app):
    """A phone sending its local time without the offset had every point read as UTC: in Lisbon's summer each one
    an hour ahead, dropped as from the future, and the driver went stale while pinging."""
    driver, auth = await _sync(_online_driver)()
    local = datetime.now(UTC).replace(tzinfo=None).isoformat()
    async with _client(django_app) as client:
        answer = await client.post(URL, json={"points": [_point(recorded_at=local)]}, headers=auth)
    assert answer.status_code == 400
    offset = "Give the time with its offset from UTC, e.g. 2026-11-25T12:00:00Z or +09:00."
    assert answer.json()["fields"] == {"points": {"0": {"recorded_at": [offset]}}}
    assert not await _sync(_indexed)(driver)


_PING = orjson.dumps({"points": [_point()]})


@pytest.mark.parametrize(
    ("body", "idempotency_key", "field"),
    [
        (b'{"points": [', None, "non_field_errors"),
        (_PING, "", "Idempotency-Key"),
        (_PING, "k" * 256, "Idempotency-Key"),
    ],
    ids=["not-json", "empty-key", "long-key"],  # the ping's time is no id: workers must collect the same names
)
async def test_a_malformed_body_or_idempotency_key_gets_the_apis_400_with_fields(
    zones, django_app, body, idempotency_key, field
):
    driver, auth = await _sync(_online_driver)()
    key = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    async with _client(django_app) as client:
        answer = await client.post(URL, content=body, headers=auth | key | {"Content-Type": "application/json"})
    meta = {} if idempotency_key is None else {"HTTP_IDEMPOTENCY_KEY": idempotency_key}
    expected = await _sync(
        lambda: api_client_for(driver.user).post(PATH, data=body, content_type="application/json", **meta)
    )()
    assert answer.status_code == expected.status_code == 400
    assert answer.json() == expected.json()
    assert answer.json()["fields"][field]


async def test_a_nul_in_the_query_string_gets_the_apis_400(zones, django_app):
    driver, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        answer = await client.post(URL + "?source=%00", json={"points": [_point()]}, headers=auth)
    expected = await _sync(
        lambda: api_client_for(driver.user).post(PATH + "?source=%00", {"points": [_point()]}, format="json")
    )()
    assert answer.status_code == expected.status_code == 400
    assert answer.json() == expected.json()
    assert answer.json()["fields"] == {"source": ["Null characters are not allowed."]}
    assert django_app.calls == 1
    assert not await _sync(_indexed)(driver)


async def test_forms_the_lean_validator_leaves_to_the_serializer_still_work(zones, django_app):
    _, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        answer = await client.post(URL, json={"points": [_point(lat="38.715")]}, headers=auth)
        broken = await client.post(URL, content=b'{"points": [', headers=auth | {"Content-Type": "application/json"})
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "dropped": 0})
    assert (broken.status_code, broken.json()["code"]) == (400, "parse_error")
    assert django_app.calls == 2


async def test_unknown_token_missing_token_and_other_roles_answer_as_the_api(zones, django_app):
    merchant = await _sync(factories.MerchantFactory)()
    merchant_token, _ = await _sync(Token.objects.get_or_create)(user=merchant.user)
    body = {"points": [_point()]}
    async with _client(django_app) as client:
        unknown = await client.post(URL, json=body, headers={"Authorization": "Token nope"})
        missing = await client.post(URL, json=body)
        other_role = await client.post(URL, json=body, headers={"Authorization": f"Token {merchant_token.key}"})
    assert (unknown.status_code, unknown.json()["code"]) == (401, "authentication_failed")
    assert (missing.status_code, missing.json()["code"]) == (401, "not_authenticated")
    assert (other_role.status_code, other_role.json()["code"]) == (403, "permission_denied")


async def test_a_revoked_token_is_refused_on_the_next_ping(zones, django_app):
    driver, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        await _sync(Token.objects.filter(user=driver.user).delete)()
        revoked = await client.post(URL, json={"points": [_point()]}, headers=auth)
    assert (revoked.status_code, revoked.json()["code"]) == (401, "authentication_failed")


async def test_an_expired_token_is_refused_on_the_next_ping(zones, django_app, clock):
    _, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        clock.shift(timedelta(days=30))  # a driver's token lasts 30 days; the cached entry would last 30 s more
        expired = await client.post(URL, json={"points": [_point()]}, headers=auth)
    assert (expired.status_code, expired.json()["code"]) == (401, "token_expired")


async def test_a_deactivated_user_is_refused_on_the_next_ping(zones, django_app):
    driver, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        user = driver.user
        user.is_active = False
        await _sync(user.save)()
        refused = await client.post(URL, json={"points": [_point()]}, headers=auth)
    assert refused.status_code == 401


async def test_a_driver_gone_offline_is_not_indexed_by_the_next_ping(zones, django_app):
    """The cached "online" is void once the driver goes offline, in any process: the version in Redis moves."""
    driver, auth = await _sync(_online_driver)()
    async with _client(django_app) as client:
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        assert await _sync(_indexed)(driver)
        await _sync(take_offline)(driver.pk, actor=Actor.driver(driver), reason="test")
        assert not await _sync(_indexed)(driver)
        await client.post(URL, json={"points": [_point()]}, headers=auth)
    assert not await _sync(_indexed)(driver)


async def test_the_throttle_budget_is_shared_with_the_rest_of_the_api(zones, django_app, monkeypatch, settings):
    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", {"user": "3/min"})
    driver, auth = await _sync(_online_driver)()
    history_key = throttling.log_key(f"throttle_user_{driver.user_id}")
    raw = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    raw.delete(history_key)
    try:
        me = await _sync(lambda: api_client_for(driver.user).get("/api/v1/driver/me"))()  # through Django
        assert me.status_code == 200
        async with _client(django_app) as client:
            answers = [await client.post(URL, json={"points": [_point()]}, headers=auth) for _ in range(3)]
    finally:
        raw.delete(history_key)
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["code"] == "throttled"
    assert "retry-after" in answers[2].headers


async def test_an_idempotent_retry_is_replayed_by_the_api(zones, django_app):
    _, auth = await _sync(_online_driver)()
    headers = auth | {"Idempotency-Key": "ping-1"}
    body = {"points": [_point()]}
    async with _client(django_app) as client:
        first = await client.post(URL, json=body, headers=headers)
        again = await client.post(URL, json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content


def test_the_lean_validator_refuses_what_it_cannot_judge():
    plain = b'{"points": [{"lat": 38.7, "lng": -9.1, "recorded_at": "2026-11-25T12:00:00.5Z", "heading": 360}]}'
    assert parse_batch(plain)[0].recorded_at == datetime(2026, 11, 25, 12, 0, 0, 500000, tzinfo=UTC)
    for body in (
        b'{"points": [{"lat": true, "lng": -9.1, "recorded_at": "2026-11-25T12:00:00Z"}]}',
        b'{"points": [{"lat": 38.7, "lng": -9.1, "recorded_at": "2026-11-25T12:00:00"}]}',
        b'{"points": [{"lat": 38.7, "lng": -9.1, "recorded_at": "2026-11-25T12:00:00+0100"}]}',
        b'{"points": [{"lat": NaN, "lng": -9.1, "recorded_at": "2026-11-25T12:00:00Z"}]}',
    ):
        assert parse_batch(body) is None


class HeldRefreshes:
    """The background refresh of cached tokens, its gathering held until `release()`; counts its reads."""

    def __init__(self, monkeypatch) -> None:
        self.gate = asyncio.Event()
        self.reads: list[list[str]] = []
        real_read = credentials._load_many

        async def counted(keys):
            self.reads.append(sorted(keys))
            return await real_read(keys)

        monkeypatch.setattr(credentials._Refreshes, "_gathering", staticmethod(self.gate.wait))
        monkeypatch.setattr(credentials, "_load_many", counted)

    async def release(self) -> None:
        task = credentials._refreshes[asyncio.get_running_loop()].task
        self.gate.set()
        await task


def _age(auth: dict, seconds: float) -> None:
    """As if the token's cache entry had been read `seconds` earlier (the cache's clock is the monotonic one)."""
    key = auth["Authorization"].removeprefix("Token ")
    entry = credentials.cache.get(key)
    credentials.cache.put(key, replace(entry, loaded_at=entry.loaded_at - seconds))


async def test_tokens_in_use_are_read_again_together_before_they_expire(zones, django_app, monkeypatch):
    """A token pinged with is read again in the background as its entry nears the end of its life, with the
    others come due in one query; it then never misses (a miss is a read on the ping's own path)."""
    drivers = [await _sync(_online_driver)() for _ in range(3)]
    held = HeldRefreshes(monkeypatch)
    async with _client(django_app) as client:
        for _, auth in drivers:
            assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        misses = len(held.reads)
        for _, auth in drivers:
            _age(auth, credentials.REFRESH_AFTER_S + 1)  # due, not expired
        answers = await asyncio.gather(*(client.post(URL, json={"points": [_point()]}, headers=a) for _, a in drivers))
        assert [a.status_code for a in answers] == [202] * 3
        assert len(held.reads) == misses  # answered from the cache: nothing read on the pings' path
        await held.release()
        assert held.reads[misses:] == [sorted(a["Authorization"].removeprefix("Token ") for _, a in drivers)]
        for _, auth in drivers:
            _age(auth, credentials.ENTRY_TTL_S - credentials.REFRESH_AFTER_S)  # past the first read's life
        answers = await asyncio.gather(*(client.post(URL, json={"points": [_point()]}, headers=a) for _, a in drivers))
    assert [a.status_code for a in answers] == [202] * 3
    assert len(held.reads) == misses + 1  # no miss
    assert django_app.calls == 0


async def test_a_token_revoked_while_redis_missed_the_bump_is_refused_after_the_refresh(zones, django_app, monkeypatch):
    """The refresh keeps the cache's promise for a lost bump: a revoked token stops working within its entry's
    life, not later for being in use."""
    driver, auth = await _sync(_online_driver)()
    held = HeldRefreshes(monkeypatch)
    async with _client(django_app) as client:
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        monkeypatch.setattr(credentials, "bump_version", lambda user_id: None)  # Redis missed it
        await _sync(Token.objects.filter(user=driver.user).delete)()
        _age(auth, credentials.REFRESH_AFTER_S + 1)
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202  # cached
        await held.release()
        refused = await client.post(URL, json={"points": [_point()]}, headers=auth)
    assert (refused.status_code, refused.json()["code"]) == (401, "authentication_failed")


async def test_a_refresh_that_fails_is_logged_and_leaves_the_entry_to_expire(zones, django_app, monkeypatch, caplog):
    driver, auth = await _sync(_online_driver)()
    held = HeldRefreshes(monkeypatch)
    async with _client(django_app) as client:
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202
        _age(auth, credentials.REFRESH_AFTER_S + 1)
        assert (await client.post(URL, json={"points": [_point()]}, headers=auth)).status_code == 202

        async def down(keys):
            raise OperationalError("the database is gone")

        monkeypatch.setattr(credentials, "_load_many", down)
        await held.release()
        assert "Refreshing 1 cached driver tokens failed" in caplog.text
        monkeypatch.undo()
        _age(auth, credentials.ENTRY_TTL_S)  # expired: the next ping reads its token again
        answer = await client.post(URL, json={"points": [_point()]}, headers=auth)
    assert answer.status_code == 202
    assert await _sync(_indexed)(driver)


def test_a_refresh_leaves_an_entry_replaced_during_its_read_as_it_is():
    """A ping that found a new version reloaded the entry while the refresh was reading: the newer entry stays."""
    was = credentials.DriverCredential(1, "d", True, "3", loaded_at=0.0, expires_at=float("inf"))
    newer = replace(was, version="4", loaded_at=10.0)
    try:
        credentials.cache.put("k", newer)
        credentials.cache.refreshed("k", was, replace(was, version=None, loaded_at=5.0))
        assert credentials.cache._entries["k"] is newer
        credentials.cache.put("k", was)
        credentials.cache.refreshed("k", was, replace(was, version=None, loaded_at=5.0))
        assert credentials.cache._entries["k"] == replace(was, loaded_at=5.0)  # the version the last ping checked
    finally:
        credentials.cache.clear()
