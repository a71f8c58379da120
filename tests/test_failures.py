"""Failure paths: a down broker or channel layer delays work but loses nothing."""

from datetime import timedelta

import pytest
import redis
from django.contrib.messages import get_messages
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from core import metrics
from core.audit import Actor
from core.queue import ENQUEUE_FAILURES
from deliveries import eta
from deliveries.models import Offer, OfferStatus, WebhookDelivery
from deliveries.services import offers
from deliveries.services.progress import pick_up_delivery
from deliveries.tasks import (
    dispatch_waiting_deliveries,
    expire_offer_task,
    expire_overdue_offers,
    mark_stale_drivers,
    refresh_etas,
    send_unsent_webhooks,
    send_webhook,
)
from drivers import locations
from drivers.models import DriverMessage
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db(transaction=True)


def broken(*args, **kwargs):
    raise OperationalError("Error 111 connecting to broker. Connection refused.")


def test_a_down_broker_does_not_fail_a_delivery_and_the_sweeps_catch_up(zones, monkeypatch, clock):
    monkeypatch.setattr(expire_offer_task, "apply_async", broken)
    monkeypatch.setattr(send_webhook, "apply_async", broken)
    before = metrics.value(ENQUEUE_FAILURES)
    factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory(webhook_url="http://127.0.0.1:9/hook")
    response = api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")

    assert response.status_code == 201
    assert response.json()["status"] == "offered"
    assert metrics.value(ENQUEUE_FAILURES) >= before + 2  # the expiry task and webhooks could not be queued
    unsent = set(WebhookDelivery.objects.filter(attempts=0).values_list("pk", flat=True))
    assert unsent
    monkeypatch.undo()

    clock.shift(31)
    assert expire_overdue_offers() == 1  # the offer still expires on time, by the sweep
    assert Offer.objects.filter(status=OfferStatus.EXPIRED).count() == 1
    clock.shift(60)
    # Also queued: the retry of the webhook the expiry wrote (its first attempt found no receiver at that port).
    assert send_unsent_webhooks() == len(unsent) + 1
    assert not WebhookDelivery.objects.filter(pk__in=unsent, attempts=0).exists()


def test_a_down_channel_layer_keeps_the_message_for_resume(zones, monkeypatch):
    class DownLayer:
        async def group_send(self, *args, **kwargs):
            raise ConnectionError("Redis is down")

    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: DownLayer())
    driver = factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory()
    response = api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    assert response.status_code == 201
    stored = DriverMessage.objects.get(driver=driver, type="offer.created")
    assert stored.data["delivery"]["id"] == response.json()["id"]


def test_expiry_sweep_is_safe_to_run_twice(zones, clock):
    factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory()
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    clock.shift(timedelta(seconds=31))
    assert expire_overdue_offers() == 1
    assert expire_overdue_offers() == 0


def test_with_redis_down_the_api_still_takes_deliveries_and_pings(zones, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    settings.RELAY_LOCATION_REDIS_URL = "redis://127.0.0.1:1/0"
    locations.reset_redis()
    driver = factories.DriverFactory()
    api_client_for(driver.user).post("/api/v1/driver/availability", {"state": "available"}, format="json")
    ping = {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": timezone.now().isoformat()}
    assert (
        api_client_for(driver.user).post("/api/v1/driver/locations", {"points": [ping]}, format="json").status_code
        == 202
    )
    merchant = factories.MerchantFactory()
    response = api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    assert response.status_code == 201
    assert response.json()["status"] == "offered"  # found through the database fallback
    assert Offer.objects.get(status=OfferStatus.PENDING).driver == driver


def test_a_failed_first_offer_leaves_the_delivery_saved_for_the_sweep(zones, monkeypatch, clock):
    """The delivery and its first offer share one transaction; when the offer fails, the delivery is still
    created (201, pending, no trace of the failed offer) and the dispatch sweep offers it."""
    from deliveries.services import creation

    def offer_then_fail(delivery, **kwargs):
        real_dispatch_locked(delivery, **kwargs)  # the offer is written, then something fails
        raise RuntimeError("dispatch failed")

    real_dispatch_locked = creation.dispatch_locked
    monkeypatch.setattr(creation, "dispatch_locked", offer_then_fail)
    factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory()
    response = api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")

    assert response.status_code == 201
    assert response.json()["status"] == "pending"
    assert [e["type"] for e in response.json()["events"]] == ["delivery.created"]
    assert not Offer.objects.exists()
    monkeypatch.undo()
    clock.shift(5)
    assert dispatch_waiting_deliveries() == 1
    assert Offer.objects.get().status == OfferStatus.PENDING


@pytest.mark.redis
def test_drivers_who_kept_pinging_through_a_redis_outage_stay_online_when_it_comes_back(zones, settings, clock):
    """Redis unreachable for longer than the stale limit, then back with its data (it hung, the network split, or
    it restarted from its dump): it still buffers each driver's position from before the outage, while the pings
    of the outage went to the database. The first flush must not put the old position back over them."""
    from deliveries.services.availability import mark_stale_drivers
    from drivers.models import DriverState

    driver = factories.online_driver(*factories.CENTRO)  # the ping waits in Redis for the next flush
    reachable = settings.RELAY_LOCATION_REDIS_URL
    settings.RELAY_LOCATION_REDIS_URL = "redis://127.0.0.1:1/0"  # ------------------------------- Redis is down
    locations.reset_redis()
    for _ in range(30):  # two minutes of pings, every 4 s, recorded in the database
        clock.shift(4)
        factories.ping(driver, *factories.CENTRO)
    settings.RELAY_LOCATION_REDIS_URL = reachable  # ------------------------- Redis is back, with what it held
    locations.reset_redis()

    assert mark_stale_drivers() == 0
    driver.refresh_from_db()
    assert driver.state == DriverState.AVAILABLE  # not taken offline, nor its deliveries taken away
    assert driver.last_seen_at == timezone.now()


@pytest.mark.redis
def test_a_position_the_database_could_not_take_is_written_by_the_next_flush(zones, clock, monkeypatch):
    """The flush takes the drivers to write out of Redis' set, then writes them: the database failing in between
    left a driver who sent no ping since with the position and time from before, and the stale sweep set a driver
    seen 35 s ago offline (taking away what they carried) for silence."""
    from deliveries.services.availability import mark_stale_drivers
    from drivers.models import Driver, DriverState

    driver = factories.online_driver(*factories.CENTRO)
    assert locations.flush_positions() == 1
    clock.shift(60)
    factories.ping(driver, *factories.east(0.2))  # then a tunnel: the next ping is 40 s away

    def connection_lost(*args, **kwargs):
        raise DatabaseError("server closed the connection unexpectedly")

    with monkeypatch.context() as database_down:
        database_down.setattr(Driver.objects, "bulk_update", connection_lost)
        with pytest.raises(DatabaseError):
            locations.flush_positions()
    clock.shift(35)

    assert mark_stale_drivers() == 0
    driver.refresh_from_db()
    assert driver.state == DriverState.AVAILABLE
    assert driver.last_seen_at == timezone.now() - timedelta(seconds=35)


@pytest.mark.redis
def test_drivers_who_went_offline_while_redis_was_unreachable_do_not_hide_the_others_from_dispatch(
    zones, settings, clock, monkeypatch
):
    """Going offline takes a driver out of the index; with Redis unreachable at that moment, the driver stayed in it
    for as long as Redis kept its data. A search takes a zone's nearest CANDIDATE_POOL before it drops those not seen
    lately: that many drivers who ended their shift at the pickup while Redis was away hid the one waiting beside
    them, and every delivery there went unoffered. The flush takes drivers silent for 10 minutes out."""
    from deliveries.services import dispatch

    monkeypatch.setattr(dispatch, "CANDIDATE_POOL", 3)  # 50 in production: as many drivers, at 3 the time
    gone = [factories.online_driver(*factories.CENTRO) for _ in range(dispatch.CANDIDATE_POOL)]
    reachable = settings.RELAY_LOCATION_REDIS_URL
    settings.RELAY_LOCATION_REDIS_URL = "redis://127.0.0.1:1/0"  # ------------------------------- Redis is down
    locations.reset_redis()
    for driver in gone:
        went = api_client_for(driver.user).post("/api/v1/driver/availability", {"state": "offline"})
        assert went.json()["state"] == "offline"
    settings.RELAY_LOCATION_REDIS_URL = reachable  # ------------------------- Redis is back, with what it held
    locations.reset_redis()
    clock.shift(10 * 60 + 1)
    waiting = factories.online_driver(*factories.east(0.5))
    locations.flush_positions()

    merchant = factories.MerchantFactory()
    created = api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    assert created.json()["status"] == "offered"
    assert Offer.objects.get(status=OfferStatus.PENDING).driver == waiting


def _lose_the_index(settings) -> None:
    """Redis restarted without its data: every key of the index is gone."""
    client = locations.redis_client()
    client.delete(*client.scan_iter(settings.RELAY_REDIS_KEY_PREFIX + "*"))


@pytest.mark.redis
def test_drivers_are_found_again_soon_after_redis_comes_back_empty(zones, settings, clock):
    """Until each driver pinged again, an index that Redis lost found nobody: dispatch escalated to ops and named
    the driver at the pickup "too far". The next flush (every few seconds) restores it from the database."""
    waiting = factories.online_driver(*factories.CENTRO)
    moved = factories.online_driver(*factories.east(3))
    gone = factories.online_driver(*factories.CENTRO)
    assert locations.flush_positions() == 3
    went = api_client_for(gone.user).post("/api/v1/driver/availability", {"state": "offline"}, format="json")
    assert went.json()["state"] == "offline"  # its last position stays in the database, not in any search
    _lose_the_index(settings)
    clock.shift(4)
    factories.ping(moved, *factories.east(0.5))  # pinged since Redis came back: its own position stays

    assert locations.flush_positions() == 1  # the new ping, after the index is restored
    found = locations.nearest_drivers(*factories.CENTRO, radius_km=5, limit=10)
    assert [(hit.driver_id, round(hit.distance_km, 1)) for hit in found] == [(str(waiting.pk), 0), (str(moved.pk), 0.5)]
    merchant = factories.MerchantFactory()
    created = api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    assert created.json()["status"] == "offered"
    assert Offer.objects.get(status=OfferStatus.PENDING).driver == waiting


@pytest.mark.redis
def test_a_restore_cut_short_is_tried_again_by_the_next_flush(zones, settings, monkeypatch):
    """Redis went away again in the middle of the restore: the flush after it restores the index, not only the
    drivers' next pings."""
    waiting = factories.online_driver(*factories.CENTRO)
    assert locations.flush_positions() == 1
    _lose_the_index(settings)
    with monkeypatch.context() as flapping:
        flapping.setattr(redis.client.Pipeline, "execute", _redis_lost_again)  # the restore's writes
        assert locations.flush_positions() == 0
    locations.reset_redis()  # and is back: searches use it again

    locations.flush_positions()
    found = locations.nearest_drivers(*factories.CENTRO, radius_km=5, limit=10)
    assert [hit.driver_id for hit in found] == [str(waiting.pk)]


def _redis_lost_again(pipeline, *args, **kwargs):
    raise redis.exceptions.ConnectionError("Connection reset by peer")


def test_a_webhook_whose_retry_was_lost_is_still_sent_by_the_sweep(zones, receivers, monkeypatch, clock):
    """A retry is a task the sweep queues when it is due, and a queued task can be lost (a broker restarted without
    its data forgets it). The webhook must reach the merchant anyway: it is still due, and the next sweep queues it
    again."""
    endpoint = receivers(status=500)
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    monkeypatch.setattr(send_webhook, "apply_async", lambda *args, **kwargs: None)  # sent by hand below
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    send_webhook.apply(args=[str(webhook.pk)])  # the first attempt fails
    clock.shift(timedelta(minutes=1))
    assert send_unsent_webhooks() == 1  # its retry is queued, and lost
    monkeypatch.undo()
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts, len(endpoint.requests)) == (WebhookDelivery.Status.PENDING, 1, 1)

    endpoint.status = 200
    clock.shift(timedelta(minutes=1))
    assert send_unsent_webhooks() == 1
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts) == (WebhookDelivery.Status.SENT, 2)
    assert len(endpoint.requests) == 2
    assert send_unsent_webhooks() == 0


class WorkerDied(BaseException):
    """A worker killed mid-task (OOM, a deploy): nothing after the call runs, not even an `except Exception`."""


def test_a_webhook_whose_worker_died_mid_attempt_is_sent_again_once_and_only_after_its_claim_ran_out(
    zones, receivers, monkeypatch, clock
):
    """The merchant got the call but the outcome was never written. The broker redelivers the task at once (acks
    late): it must not call again while the attempt may still be under way, and the sweep must make it again once the
    attempt's time limit has surely passed: at least once, never lost."""
    from deliveries import webhooks

    endpoint = receivers()
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    monkeypatch.setattr(send_webhook, "apply_async", lambda *args, **kwargs: None)  # sent by hand below
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    post = webhooks.post_webhook

    def post_then_die(webhook):
        post(webhook)
        raise WorkerDied

    monkeypatch.setattr(webhooks, "post_webhook", post_then_die)
    with pytest.raises(WorkerDied):
        send_webhook.apply(args=[str(webhook.pk)])
    monkeypatch.undo()

    send_webhook.apply(args=[str(webhook.pk)])  # redelivered by the broker
    clock.shift(timedelta(minutes=1))
    assert send_unsent_webhooks() == 0  # the claim lasts the call's time limit (10 s) and a minute more
    assert len(endpoint.requests) == 1
    clock.shift(timedelta(minutes=1))
    assert send_unsent_webhooks() == 1
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts) == (WebhookDelivery.Status.SENT, 1)
    assert [request.body for request in endpoint.requests] == [webhook.body.encode()] * 2  # one `id`: deduped


@pytest.mark.parametrize(
    "error",
    [RuntimeError("Queue.declare: (404) NOT_FOUND - vhost 'relay' not found"), ValueError("bad broker URL")],
    ids=["misconfigured-broker", "bad-url"],
)
def test_any_failure_to_queue_after_the_commit_answers_the_created_delivery_once(zones, monkeypatch, error):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(expire_offer_task, "apply_async", failing)
    monkeypatch.setattr(send_webhook, "apply_async", failing)
    before = metrics.value(ENQUEUE_FAILURES)
    factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory(webhook_url="http://127.0.0.1:9/hook")
    client = api_client_for(merchant.user)
    payload = factories.delivery_payload()

    response = client.post("/api/v1/deliveries", payload, format="json", HTTP_IDEMPOTENCY_KEY="create-1")

    assert response.status_code == 201, response.content
    assert response.json()["status"] == "offered"
    assert metrics.value(ENQUEUE_FAILURES) >= before + 2  # counted as the broker outage is: its sweep is behind it
    again = client.post("/api/v1/deliveries", payload, format="json", HTTP_IDEMPOTENCY_KEY="create-1")
    assert (again.status_code, again.json()["id"]) == (201, response.json()["id"])
    assert Offer.objects.count() == 1


def test_a_driver_the_missed_offers_rule_failed_to_take_offline_is_taken_offline_by_the_stale_sweep(
    merchant_api, monkeypatch, clock
):
    """The third offer in a row expires, and taking the driver offline (its own transaction, after the expiry's)
    fails: the expiry and the count stand, and the stale sweep takes them offline, where they stayed online and
    were offered the next job they would not answer."""
    from deliveries.services import availability

    sleepy = factories.online_driver(*factories.east(0.3))
    for n in range(3):
        offer = factories.pending_offer(factories.delivery_via_api(merchant_api, external_id=f"missed-{n}"))
        clock.shift(31)
        factories.ping(sleepy, *factories.east(0.3))  # still there, just not answering
        if n == 2:
            monkeypatch.setattr(availability, "take_offline", broken_database)
            with pytest.raises(DatabaseError):
                offers.expire_offer(offer.pk)
            monkeypatch.undo()
        else:
            assert offers.expire_offer(offer.pk)
    offer.refresh_from_db()
    sleepy.refresh_from_db()
    assert (offer.status, sleepy.missed_offers_in_row, sleepy.state) == ("expired", 3, "available")

    mark_stale_drivers()
    sleepy.refresh_from_db()
    assert sleepy.state == "offline"
    told = DriverMessage.objects.filter(driver=sleepy, type="driver.state").last()
    assert (told.data["reason"], told.data["detail"]) == (
        "missed_offers",
        "You were set offline after 3 offers in a row expired without an answer.",
    )


def broken_database(*args, **kwargs):
    raise DatabaseError("server closed the connection unexpectedly")


def test_a_capacity_change_whose_follow_up_failed_is_saved_and_the_driver_follows_it_at_the_stale_sweep(
    admin_client, merchant, monkeypatch, clock
):
    """Ops raise a busy driver's capacity and the state change after the form's commit fails: ops got an error
    page for a change that was made, and the driver stayed busy, never offered a job, until their delivery ended."""
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    factories.assigned_delivery(merchant, rider, "first")
    form = {"user": rider.user_id, "name": rider.name, "phone": "", "vehicle": "bicycle"}
    form |= {"home_zone": rider.home_zone_id, "capacity": 2}
    monkeypatch.setattr("deliveries.admin.driver.apply_capacity", broken_database)

    response = admin_client.post(reverse("admin:drivers_driver_change", args=[rider.pk]), form, follow=True)

    assert response.status_code == 200
    assert (
        "Rita Rodrigues can now carry 2; whether they are busy or available is brought in line within 15 seconds."
        in [str(m) for m in get_messages(response.wsgi_request)]
    )
    rider.refresh_from_db()
    assert (rider.state, rider.capacity) == ("busy", 2)
    monkeypatch.undo()
    mark_stale_drivers()
    rider.refresh_from_db()
    assert rider.state == "available"
    second = factories.new_delivery(merchant, "second")
    assert factories.pending_offer(second).driver == rider


def test_etas_a_failed_refresh_did_not_get_to_are_refreshed_by_the_next_run(merchant, clock, monkeypatch):
    """The refresh takes the deliveries whose drivers pinged out of Redis' set, then fails on the first: those it
    took kept the ETA shown until their driver's next points (for good, if none came), though they were at the door."""
    riders, deliveries = [], []
    for n, name in enumerate(["Rui Rocha", "Ana Silva"]):
        rider = factories.online_driver(*factories.CENTRO, name=name)  # the one free driver: offered the next
        riders.append(rider)
        delivery = factories.assigned_delivery(merchant, rider, external_id=f"order-{n}", dropoff=factories.east(2))
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
        delivery.refresh_from_db()
        deliveries.append(delivery)
    clock.shift(15)
    for rider in riders:
        factories.ping(rider, *factories.east(2))  # at the door already: minutes earlier than shown

    def fails_once(delivery, **kwargs):
        monkeypatch.setattr(eta, "estimate", real_estimate)
        raise DatabaseError("server closed the connection unexpectedly")

    real_estimate = eta.estimate
    monkeypatch.setattr(eta, "estimate", fails_once)
    with pytest.raises(DatabaseError):
        refresh_etas()

    assert refresh_etas() == 2  # no ping since
    for delivery in deliveries:
        shown = delivery.eta_dropoff
        delivery.refresh_from_db()
        assert delivery.eta_dropoff < shown - eta.PUSH_WHEN_MOVED
