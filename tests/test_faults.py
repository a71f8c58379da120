"""Faults under a running production-mode Relay (issue 13). Each test breaks only what it started itself: a private
redis-server on its own port, its own Celery processes, its own database connections. The shared PostgreSQL, Redis
and RabbitMQ are never stopped.

RELAY_OUTAGE_S sets how long Redis stays down (default 15 s in CI; `make fault-drill` runs 150 s)."""

import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis
from django.db import connection
from websockets.sync.client import connect

from deliveries.models import Delivery, Escalation, Offer, OfferStatus
from tests import factories, faults
from tests.servers import production_env, running_server

OUTAGE_S = float(os.environ.get("RELAY_OUTAGE_S", "15"))
KILL_ROUNDS = int(os.environ.get("RELAY_DB_KILL_ROUNDS", "5"))
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker():
    if not faults.broker_reachable():
        pytest.fail(f"fault tests need RabbitMQ at {faults.RABBITMQ} (the production broker; .ci/run has it)")
    return faults.RABBITMQ


def _point() -> dict:
    return {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": datetime.now(UTC).isoformat()}


def _indexed(url: str, settings) -> bool:
    with redis.Redis.from_url(url) as index:
        return any(index.scan_iter(f"{settings.RELAY_REDIS_KEY_PREFIX}*"))


class Api:
    def __init__(self, url: str, token: str):
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=10)
        self.statuses: list[int] = []

    def post(self, path: str, body=None):
        answer = self.client.post(path, json=body)
        self.statuses.append(answer.status_code)
        return answer

    def get(self, path: str):
        answer = self.client.get(path)
        self.statuses.append(answer.status_code)
        return answer


def test_redis_down_for_a_while_no_5xx_offers_expire_the_ladder_climbs_and_everything_recovers(
    zones, settings, tmp_path, broker
):
    from tests.conftest import api_client_for

    zone = zones["centro"]
    zone.offer_timeout_s, zone.escalation_warn_s, zone.escalation_alert_s = 5, 4, 8
    zone.save()
    faults.fast_sweeps()
    driver = factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory()
    token = {
        role: api_client_for(user)._credentials["HTTP_AUTHORIZATION"].split()[1]
        for role, user in (("driver", driver.user), ("merchant", merchant.user))
    }

    with faults.private_redis(tmp_path) as private:
        env = production_env(settings) | {"REDIS_URL": private.url, "CELERY_BROKER_URL": broker}
        with running_server(env, tmp_path / "server.log") as url, faults.worker_and_beat(env, tmp_path / "celery.log"):
            driver_api, merchant_api = Api(url, token["driver"]), Api(url, token["merchant"])
            assert driver_api.post("/api/v1/driver/locations", {"points": [_point()]}).status_code == 202
            assert _indexed(private.url, settings), "the ping never reached the index"
            pinged_at = datetime.now(UTC)

            def flushed():  # positions reach PostgreSQL in batches (the flush sweep): the copy dispatch falls back on
                driver.refresh_from_db()
                return driver.last_seen_at and driver.last_seen_at >= pinged_at - timedelta(seconds=1)

            faults.wait_for(flushed, timeout_s=10, what="the flush sweep copied the position to PostgreSQL")

            private.stop()  # ---------------------------------------------------------------- Redis is down
            outage_started = time.monotonic()
            created = merchant_api.post("/api/v1/deliveries", factories.delivery_payload("during-outage"))
            assert created.status_code == 201, created.text
            delivery = Delivery.objects.get(pk=created.json()["id"])
            offer = Offer.objects.get(delivery=delivery)  # dispatch went on, on PostgreSQL's copy of positions
            assert offer.driver_id == driver.pk
            deadline = offer.expires_at

            def outage_traffic():
                driver_api.post("/api/v1/driver/locations", {"points": [_point()]})
                driver_api.get("/api/v1/driver/me")
                merchant_api.get(f"/api/v1/deliveries/{delivery.pk}")
                offer.refresh_from_db()
                return offer.status == OfferStatus.EXPIRED

            _, took = faults.wait_for(outage_traffic, timeout_s=30, what="the offer expired with Redis down")
            expired_at = datetime.now(UTC)
            assert (expired_at - deadline).total_seconds() <= 2 * faults.SWEEP_S + 3  # the sweep, on RabbitMQ
            assert offer.unheard  # its push could not reach the app: the expiry is not the driver's miss
            driver.refresh_from_db()
            assert driver.missed_offers_in_row == 0

            def escalated():
                outage_traffic()
                return Escalation.objects.filter(delivery=delivery).exists()

            faults.wait_for(escalated, timeout_s=30, what="the ladder opened an escalation with Redis down")

            def outage_over():  # the rest of the outage: traffic goes on, and keeps getting answers
                outage_traffic()
                return time.monotonic() - outage_started >= OUTAGE_S

            faults.wait_for(outage_over, timeout_s=OUTAGE_S + 10, what="the outage ran its course")
            assert all(status < 500 for status in driver_api.statuses + merchant_api.statuses), sorted(
                set(driver_api.statuses + merchant_api.statuses)
            )

            private.start()  # ---------------------------------------------------------------- Redis is back

            def indexed_again():
                driver_api.post("/api/v1/driver/locations", {"points": [_point()]})
                return _indexed(private.url, settings)

            faults.wait_for(indexed_again, timeout_s=30, what="pings reach the location index again")
            ws = url.replace("http", "ws", 1)
            with connect(f"{ws}/ws/driver/?token={token['driver']}") as socket:
                answer = driver_api.post("/api/v1/driver/availability", {"state": "on_break"})
                assert answer.status_code == 200, answer.text
                pushed = json.loads(socket.recv(timeout=15))  # through the channel layer on the restarted Redis
                assert pushed["type"] == "driver.state"
            assert all(status < 500 for status in driver_api.statuses + merchant_api.statuses)
            driver_api.client.close()
            merchant_api.client.close()
    for log in ("server.log", "celery.log"):  # warnings (index fallback, pushes skipped) yes; errors none
        errors = [line for line in (tmp_path / log).read_text().splitlines() if " ERROR " in line]
        assert errors == [], errors
    print(
        f"Redis down {OUTAGE_S:.0f} s: {len(driver_api.statuses + merchant_api.statuses)} requests, none 5xx; "
        f"offer expired {took:.1f} s into the outage; escalation opened; recovered without restart"
    )


def test_killed_database_connections_are_replaced_and_nothing_is_half_written(zones, settings, tmp_path):
    """pg_terminate_backend on every connection of the server's pool before each request: the pool checks a
    connection as it hands it out and replaces a dead one, so requests go through; one that still met a dead
    connection would answer JSON 503 (never a 500), and nothing is half-written either way."""
    from tests.conftest import api_client_for

    merchant = factories.MerchantFactory()
    token = api_client_for(merchant.user)._credentials["HTTP_AUTHORIZATION"]
    env = production_env(settings) | {"DB_POOL_SIZE": "4", "API_THROTTLE_RATE": "100000/min"}
    with running_server(env, tmp_path / "server.log") as url:
        client = httpx.Client(base_url=url, headers={"Authorization": token}, timeout=10)
        statuses, slowest = [], 0.0
        for round_ in range(KILL_ROUNDS):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            started = time.monotonic()
            answer = client.post("/api/v1/deliveries", json=factories.delivery_payload(f"kill-{round_}"))
            slowest = max(slowest, time.monotonic() - started)
            statuses.append(answer.status_code)
            if answer.status_code == 503:
                assert answer.json()["code"] == "service_unavailable"
                assert answer.headers["content-type"] == "application/json"
        healed = client.post("/api/v1/deliveries", json=factories.delivery_payload("after"))
        client.close()
    assert set(statuses) <= {201, 503}, statuses
    assert healed.status_code == 201, healed.text
    created = {f"kill-{n}" for n, status in enumerate(statuses) if status == 201} | {"after"}
    assert set(Delivery.objects.values_list("external_id", flat=True)) == created  # nothing half-written
    print(
        f"killed connections ({KILL_ROUNDS} rounds): {statuses.count(503)} answers 503, "
        f"{statuses.count(201)} went through; slowest answer {slowest:.1f} s"
    )


@pytest.mark.django_db
def test_a_database_error_during_a_request_answers_json_503(merchant_api, monkeypatch):
    """The database unreachable mid-request (restarting, its connection killed while in use): 503 in API.md's
    error shape with Retry-After, so clients retry; the action's transaction rolled back whole."""
    from django.db import OperationalError

    from deliveries.api import merchant

    def database_gone(**kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(merchant, "create_delivery", database_gone)
    answer = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json")

    assert answer.status_code == 503
    assert answer.json()["code"] == "service_unavailable"
    assert answer["Retry-After"] == "1"
    assert not Delivery.objects.exists()


def _blocked_on_a_lock() -> bool:
    """Another backend of this database waits for a row lock: the worker is inside the task."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is a snapshot per transaction otherwise
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_task_has_the_task_redone_by_the_next_worker(zones, settings, tmp_path, broker):
    """acks_late on RabbitMQ: the task a SIGKILLed worker held was never acknowledged, so the broker hands it to the
    next worker at once (Redis as broker would have hidden it for its one-hour visibility timeout). No beat runs
    here: what expires the offer is the redelivered task itself, not a sweep behind it."""
    from django.db import transaction

    from config.celery import app
    from core.models import AuditEvent
    from deliveries.tasks import expire_offer_task

    driver = factories.online_driver(*factories.CENTRO)
    delivery = factories.new_delivery(factories.MerchantFactory(), "killed-mid-task")
    offer = Offer.objects.get(delivery=delivery, driver=driver)
    Offer.objects.filter(pk=offer.pk).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    env = production_env(settings) | {"CELERY_BROKER_URL": broker}
    log = tmp_path / "celery.log"

    with transaction.atomic():
        Delivery.objects.select_for_update().get(pk=delivery.pk)  # the task will wait here, mid-way
        with app.connection_for_write(broker) as channel:
            app.conf.task_always_eager = False
            expire_offer_task.apply_async((str(offer.pk),), connection=channel)
        first = faults.celery(env, log, "worker", "-Q", "celery", "-c", "1", "--without-mingle", "--without-gossip")
        try:
            faults.wait_for(_blocked_on_a_lock, timeout_s=30, what="the worker started the task")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    # The lock is released: the task is not done (the worker died holding it), and nobody else will run it but
    # the broker's redelivery.
    offer.refresh_from_db()
    assert offer.status == OfferStatus.PENDING
    second = faults.celery(env, log, "worker", "-Q", "celery", "-c", "1", "--without-mingle", "--without-gossip")
    try:
        _, took = faults.wait_for(
            lambda: Offer.objects.get(pk=offer.pk).status == OfferStatus.EXPIRED,
            timeout_s=30,
            what="the next worker redid the task",
        )
    finally:
        faults.stop(second)
    assert AuditEvent.objects.filter(subject_id=offer.pk, type="offer.expired").count() == 1
    print(f"worker SIGKILLed mid-task: redone {took:.1f} s after the next worker started (its startup included)")
