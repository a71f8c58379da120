"""API.md: Idempotency-Key on every POST."""

import json

import pytest

from deliveries.models import Delivery
from tests import factories

pytestmark = pytest.mark.django_db


def post(api, key, **payload):
    return api.post(
        "/api/v1/deliveries", factories.delivery_payload(**payload), format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_a_retry_replays_the_first_response_byte_for_byte(merchant_api):
    first = post(merchant_api, "key-1")
    retry = post(merchant_api, "key-1")
    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry["Idempotent-Replayed"] == "true"
    assert merchant_api.get("/api/v1/deliveries").json()["count"] == 1


def test_the_same_key_with_another_body_is_refused(merchant_api):
    post(merchant_api, "key-1")
    response = post(merchant_api, "key-1", external_id="order-2")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert merchant_api.get("/api/v1/deliveries").json()["count"] == 1


def test_the_same_key_and_body_at_another_endpoint_is_refused_saying_so(merchant_api):
    """Cancelling two deliveries with one key and one body: the 422 said the body differed, and it had not."""
    first, second = (post(merchant_api, f"create-{ref}", external_id=ref).json()["id"] for ref in ("a", "b"))
    cancel = {"reason": "customer called"}
    path = "/api/v1/deliveries/{}/cancel"
    assert merchant_api.post(path.format(first), cancel, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 200
    response = merchant_api.post(path.format(second), cancel, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (response.status_code, response.json()["code"]) == (422, "idempotency_key_reused")
    assert "another endpoint" in response.json()["detail"]
    assert merchant_api.get(f"/api/v1/deliveries/{second}").json()["status"] == "pending"


def _retry_during_first(monkeypatch, api, before_retry=lambda: None) -> list:
    """Make the first request send its own retry while it is still running; returns the retry's response."""
    from deliveries.api import merchant

    real, retries, started = merchant.create_delivery, [], []

    def create_and_retry(**kwargs):
        if not started:
            started.append(True)
            before_retry()
            retries.append(post(api, "key-1"))
        return real(**kwargs)

    monkeypatch.setattr(merchant, "create_delivery", create_and_retry)
    return retries


def test_a_retry_while_the_first_is_running_is_a_conflict(merchant_api, monkeypatch):
    retries = _retry_during_first(monkeypatch, merchant_api)
    first = post(merchant_api, "key-1")
    assert first.status_code == 201
    assert retries[0].status_code == 409
    assert retries[0].json()["code"] == "request_in_progress"
    assert retries[0]["Retry-After"] == "1"  # worth retrying in a moment, as the app's retry loop reads it
    assert post(merchant_api, "key-1").content == first.content


def test_without_session_locks_a_claim_abandoned_for_a_minute_is_taken_over(merchant_api, monkeypatch, clock):
    from django.db import connection

    # SQLite, or PostgreSQL behind a pooler in transaction mode (DB_PREPARE_THRESHOLD=none): nothing tells a running
    # request from one whose process died, but time.
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "prepare_threshold", None)
    retries = _retry_during_first(monkeypatch, merchant_api, before_retry=lambda: clock.shift(61))
    post(merchant_api, "key-1")
    assert retries[0].status_code == 201
    assert merchant_api.get("/api/v1/deliveries").json()["count"] == 1


def test_keys_are_per_caller(merchant_api, zones):
    from tests.conftest import api_client_for

    other = api_client_for(factories.MerchantFactory().user)
    assert post(merchant_api, "shared").status_code == 201
    assert post(other, "shared").status_code == 201


def test_a_key_longer_than_255_characters_is_refused(merchant_api):
    response = post(merchant_api, "k" * 256)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"


def test_a_server_error_releases_the_key(merchant_api, monkeypatch):
    from deliveries.api import merchant

    def boom(**kwargs):
        raise RuntimeError("database fell over")

    monkeypatch.setattr(merchant, "create_delivery", boom)
    with pytest.raises(RuntimeError):
        post(merchant_api, "key-1")
    monkeypatch.undo()
    assert post(merchant_api, "key-1").status_code == 201


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_mid_request_answers_503_and_frees_the_key_for_the_retry(merchant_api, monkeypatch):
    """The request's database connection dies while the view runs (PostgreSQL restarted, the connection killed):
    503 as for any request, and the key is released, so the retry that the 503 asks for runs at once rather than
    getting 409 `request_in_progress` for a minute."""
    from django.db import connection

    from deliveries.api import merchant

    real = merchant.create_delivery

    def connection_killed(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        return real(**kwargs)

    monkeypatch.setattr(merchant, "create_delivery", connection_killed)
    first = post(merchant_api, "key-1")
    assert first.status_code == 503
    assert first.json()["code"] == "service_unavailable"
    monkeypatch.undo()

    retry = post(merchant_api, "key-1")
    assert retry.status_code == 201, retry.content
    assert Delivery.objects.count() == 1


def test_a_throttled_request_retried_with_the_same_key_creates_the_delivery(merchant_api, monkeypatch, clock):
    from django.core.cache import cache

    from core.throttling import UserThrottle

    cache.clear()  # throttle history of earlier tests
    monkeypatch.setattr(UserThrottle, "rate", "1/min", raising=False)
    assert post(merchant_api, "key-0", external_id="order-0").status_code == 201  # uses up the minute
    throttled = post(merchant_api, "key-1")
    assert throttled.status_code == 429
    clock.shift(61)
    retry = post(merchant_api, "key-1")
    assert retry.status_code == 201, retry.content
    assert "Idempotent-Replayed" not in retry
    assert Delivery.objects.filter(external_id="order-1").count() == 1


def test_a_request_refused_for_its_headers_is_not_replayed_once_they_are_right(merchant_api):
    """A 415 (the body's Content-Type) or a 406 (the Accept header) says nothing about the body, yet was stored and
    replayed for 24 h: an integration that fixed its headers and retried with the key got the refusal again."""

    def create(key: str, external_id: str, **headers):
        body = json.dumps(factories.delivery_payload(external_id))
        headers = {"content_type": "application/json", "HTTP_IDEMPOTENCY_KEY": key} | headers
        return merchant_api.post("/api/v1/deliveries", body, **headers)

    assert create("key-1", "order-1", content_type="text/plain").status_code == 415
    assert create("key-2", "order-2", HTTP_ACCEPT="text/csv").status_code == 406
    retries = [create("key-1", "order-1"), create("key-2", "order-2")]
    assert [retry.status_code for retry in retries] == [201, 201]
    assert Delivery.objects.count() == 2


def test_a_refused_credential_is_not_replayed(merchant, merchant_api):
    # The caller is its Authorization header: the account is suspended, then restored, same token.
    merchant.user.is_active = False
    merchant.user.save()
    refused = post(merchant_api, "key-1")
    assert refused.status_code == 401
    merchant.user.is_active = True
    merchant.user.save()
    retry = post(merchant_api, "key-1")
    assert retry.status_code == 201, retry.content


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_claim_whose_process_died_mid_request_is_taken_over_by_the_retry_at_once(merchant, monkeypatch):
    """A server process killed while it ran a request (kill -9, out of memory) left its claim open: the app's
    retry with the same key got 409 `request_in_progress` for a minute, longer than a driver's offer lasts. The
    database drops a dead process's connection, and with it what marks its request as running; while that
    process lives, a retry is still a conflict."""
    import threading

    from django.db import connection

    from deliveries.api import merchant as merchant_views
    from tests.conftest import api_client_for

    running, resume, backend = threading.Event(), threading.Event(), []

    def stuck(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend.append(cursor.fetchone()[0])
        running.set()
        resume.wait(10)
        raise RuntimeError("the process is gone: nothing of this request runs after the kill")

    def first_request():
        try:
            with pytest.raises(RuntimeError):
                post(api_client_for(merchant.user), "key-1")
        finally:
            connection.close()

    monkeypatch.setattr(merchant_views, "create_delivery", stuck)
    first = threading.Thread(target=first_request)
    first.start()
    try:
        assert running.wait(10)
        monkeypatch.undo()
        retry = post(api_client_for(merchant.user), "key-1")
        assert (retry.status_code, retry.json()["code"]) == (409, "request_in_progress")

        with connection.cursor() as cursor:  # the process dies: the database ends its connection
            cursor.execute("SELECT pg_terminate_backend(%s)", [backend[0]])
        retry = post(api_client_for(merchant.user), "key-1")
        assert retry.status_code == 201, retry.content
    finally:
        resume.set()
        first.join(10)
    assert post(api_client_for(merchant.user), "key-1").content == retry.content
    assert Delivery.objects.count() == 1


@pytest.fixture
def pooled_connection(monkeypatch):
    """This thread's connection taken from a psycopg pool of one, as a server process's are with DB_POOL_SIZE."""
    from django.db import connection

    connection.close()
    monkeypatch.setitem(
        connection.settings_dict,
        "OPTIONS",
        connection.settings_dict["OPTIONS"] | {"pool": {"min_size": 1, "max_size": 1}},
    )
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    yield connection
    connection.close()
    connection.close_pool()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_whose_release_failed_is_not_left_held_by_a_pooled_connection(merchant, pooled_connection):
    """Releasing a key's lock can fail on a connection that lives on (the statement cancelled by a timeout). Back
    in the pool, that connection kept the lock: the app's retry, answered by another process, got 409
    `request_in_progress` until the connection was recycled. The connection is closed instead, and the database
    drops the lock with it."""
    from django.db import OperationalError

    from tests.conftest import api_client_for

    def cancelled_unlock(execute, sql, params, many, context):
        if "pg_advisory_unlock" in sql:
            raise OperationalError("canceling statement due to statement timeout")
        return execute(sql, params, many, context)

    with pooled_connection.execute_wrapper(cancelled_unlock):
        first = post(api_client_for(merchant.user), "key-1")
    assert first.status_code == 201, first.content

    with psycopg_connection(pooled_connection) as elsewhere:  # another server process's connection
        held = elsewhere.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]
    assert held == 0
    retry = post(api_client_for(merchant.user), "key-1")
    assert (retry.status_code, retry.content) == (201, first.content)


def psycopg_connection(connection):
    import psycopg

    params = connection.get_connection_params()
    return psycopg.connect(
        dbname=params["dbname"], host=params.get("host"), port=params.get("port"), user=params.get("user")
    )
