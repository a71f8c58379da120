"""Breadcrumbs (SPEC 1, 6): while a driver carries a delivery, its pings leave a trail thinned to one point per
10 s, whichever way they arrive (the Django view, the ASGI ingest route, the driver socket); the trail is written
in batches, drawn on the admin delivery page, and deleted after 30 days. Nothing is kept off shift or after the
delivery."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from channels.db import DatabaseSyncToAsync
from django.db import OperationalError
from rest_framework.authtoken.models import Token

from config.asgi import django_asgi_app
from core.audit import Actor
from deliveries.models import Breadcrumb
from deliveries.services.availability import take_offline
from deliveries.services.progress import deliver_delivery, pick_up_delivery
from deliveries.services.tracking import flush_breadcrumbs, purge_old_breadcrumbs
from drivers import credentials, locations, trail
from drivers.ingest import LocationIngest
from tests import factories


def _trail(delivery) -> list[tuple[float, float]]:
    flush_breadcrumbs()
    return list(Breadcrumb.objects.filter(delivery=delivery).values_list("lat", "lng"))


@pytest.fixture
def carrying(zones, django_capture_on_commit_callbacks):
    """A driver who accepted a delivery (the trail starts at assignment: after commit)."""
    rider = factories.online_driver(*factories.CENTRO, name="Rui Rocha")
    with django_capture_on_commit_callbacks(execute=True):
        delivery = factories.assigned_delivery(factories.MerchantFactory(), rider)
    return rider, delivery


@pytest.mark.django_db
def test_pings_while_carrying_leave_a_trail_of_one_point_per_ten_seconds(carrying, clock):
    rider, delivery = carrying
    for seconds, lat in [(0, 38.7150), (3, 38.7151), (6, 38.7152), (11, 38.7153), (19, 38.7154), (25, 38.7155)]:
        clock.move_to(datetime(2026, 11, 25, 12, 0, seconds, tzinfo=UTC))
        factories.ping(rider, lat, -9.14)
    assert [lat for lat, _ in _trail(delivery)] == [38.7150, 38.7153, 38.7155]
    assert _trail(delivery) == [(38.7150, -9.14), (38.7153, -9.14), (38.7155, -9.14)]  # flushed once, not twice


@pytest.mark.django_db
def test_a_batch_of_points_is_thinned_too_and_the_trail_goes_on_after_pickup(
    carrying, clock, django_capture_on_commit_callbacks
):
    rider, delivery = carrying
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    batch = [locations.Point(38.716 + i * 1e-4, -9.14, now - timedelta(seconds=30 - 2 * i)) for i in range(16)]
    locations.record_positions(rider.pk, batch, online=True)
    assert len(_trail(delivery)) == 4  # 30 s of points every 2 s: those at -30, -20, -10 and 0 s
    with django_capture_on_commit_callbacks(execute=True):
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    clock.shift(10)
    factories.ping(rider, 38.718, -9.135)
    assert _trail(delivery)[-1] == (38.718, -9.135)


@pytest.mark.django_db
def test_nothing_is_kept_off_shift_or_after_the_delivery(carrying, clock, django_capture_on_commit_callbacks):
    rider, delivery = carrying
    with django_capture_on_commit_callbacks(execute=True):
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
        deliver_delivery(delivery.pk, actor=Actor.driver(rider))
    clock.shift(30)
    factories.ping(rider, 38.72, -9.13)
    assert _trail(delivery) == []

    # Off shift: a driver set offline while carrying a picked-up delivery (it escalates, it is still theirs).
    other = factories.online_driver(*factories.CENTRO)
    with django_capture_on_commit_callbacks(execute=True):
        second = factories.assigned_delivery(factories.MerchantFactory(), other, external_id="order-2")
        pick_up_delivery(second.pk, actor=Actor.driver(other))
        take_offline(other.pk, actor=Actor.system("stale"), reason="stale")
    other.refresh_from_db()
    clock.shift(30)
    factories.ping(other, 38.72, -9.13)
    assert (other.state, _trail(second)) == ("offline", [])


@pytest.mark.django_db
def test_breadcrumbs_older_than_the_retention_are_purged(carrying, clock, settings):
    rider, delivery = carrying
    factories.ping(rider, 38.7150, -9.14)
    clock.shift(20)
    factories.ping(rider, 38.7160, -9.14)
    assert len(_trail(delivery)) == 2
    clock.shift(timedelta(days=30).total_seconds() - 10)  # the first is 30 days and 10 s old, the second not yet
    assert purge_old_breadcrumbs() == 1
    assert _trail(delivery) == [(38.7160, -9.14)]


@pytest.mark.django_db
def test_the_admin_delivery_page_draws_the_trail_and_links_the_tracking_page(carrying, clock, client):
    rider, delivery = carrying
    for _ in range(3):
        factories.ping(rider, 38.7150, -9.14)
        clock.shift(10)
    flush_breadcrumbs()
    client.force_login(factories.OpsUserFactory(is_superuser=True))
    page = client.get(f"/admin/deliveries/delivery/{delivery.pk}/change/").content.decode()
    assert f'href="/t/{delivery.tracking_token}"' in page
    assert "driver&#x27;s trail (3 breadcrumbs)" in page or "driver's trail (3 breadcrumbs)" in page
    assert "vendor/leaflet/leaflet.js" in page and "[38.715, -9.14]" in page


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_the_async_ping_paths_leave_the_same_trail(zones, settings):
    """The ASGI ingest route and the driver socket's path (`arecord_positions`) follow pings like the view."""
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.SECURE_SSL_REDIRECT = False
    credentials.cache.clear()

    def setup():
        rider = factories.online_driver(*factories.CENTRO)
        delivery = factories.assigned_delivery(factories.MerchantFactory(), rider)  # durable: commits, carries
        return rider, delivery, Token.objects.get_or_create(user=rider.user)[0].key

    rider, delivery, token = await DatabaseSyncToAsync(setup, thread_sensitive=False)()
    now = datetime.now(UTC)
    transport = httpx.ASGITransport(app=LocationIngest(django_asgi_app))
    async with httpx.AsyncClient(transport=transport) as client:
        point = {"lat": 38.7161, "lng": -9.14, "recorded_at": (now - timedelta(seconds=30)).isoformat()}
        answer = await client.post(
            "http://127.0.0.1/api/v1/driver/locations",
            json={"points": [point]},
            headers={"Authorization": f"Token {token}"},
        )
        assert answer.status_code == 202
    await locations.arecord_positions(
        rider.pk, [locations.Point(38.7162, -9.14, now - timedelta(seconds=5))], online=True
    )
    await locations.arecord_positions(
        rider.pk, [locations.Point(38.7163, -9.14, now)], online=True
    )  # 5 s later: thinned
    trail = await DatabaseSyncToAsync(_trail, thread_sensitive=False)(delivery)
    assert trail == [(38.7161, -9.14), (38.7162, -9.14)]
    credentials.cache.clear()


@pytest.mark.redis
@pytest.mark.django_db
def test_a_delivery_picked_up_while_redis_was_down_is_followed_once_it_is_back(
    zones, settings, clock, django_capture_on_commit_callbacks
):
    """Redis unreachable when the driver accepts and picks up: what the driver carries could not be written there.
    Once Redis is back, the driver's pings follow the delivery again (trail, live location, ETA refresh)."""
    rider = factories.online_driver(*factories.CENTRO)
    locations.flush_positions()  # dispatch finds the driver in the database while Redis is down
    reachable = settings.RELAY_LOCATION_REDIS_URL
    settings.RELAY_LOCATION_REDIS_URL = "redis://127.0.0.1:1/0"  # ------------------------------- Redis is down
    locations.reset_redis()
    with django_capture_on_commit_callbacks(execute=True):
        delivery = factories.assigned_delivery(factories.MerchantFactory(), rider)
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    settings.RELAY_LOCATION_REDIS_URL = reachable  # --------------------------------------------- Redis is back
    locations.reset_redis()
    flush_breadcrumbs()  # the batch write runs every 10 s

    for lat in (38.7160, 38.7170):
        clock.shift(10)
        factories.ping(rider, lat, -9.14)
    assert _trail(delivery) == [(38.7160, -9.14), (38.7170, -9.14)]


@pytest.mark.django_db
def test_a_pickup_while_the_trail_is_restored_keeps_the_customers_live_location(
    carrying, clock, monkeypatch, django_capture_on_commit_callbacks
):
    """The restore reads what each driver carries, then writes it again: a pickup committed in between had its
    own write undone (the delivery set back to `assigned`), and the customer saw no live location after pickup."""
    rider, delivery = carrying
    restore = trail.carry_again

    def picked_up_meanwhile(carried):
        with django_capture_on_commit_callbacks(execute=True):
            pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
        return restore(carried)

    monkeypatch.setattr(trail, "carry_again", picked_up_meanwhile)
    flush_breadcrumbs()
    pushed = []
    monkeypatch.setattr(trail, "push_to_group", lambda group, envelope: pushed.append((group, envelope["type"])))
    clock.shift(10)
    factories.ping(rider, 38.7160, -9.14)
    assert pushed == [(trail.tracking_group(delivery.pk), "location")]


@pytest.mark.django_db
def test_pings_after_a_delivery_whose_end_redis_missed_leave_no_trail(
    carrying, clock, settings, django_capture_on_commit_callbacks
):
    """Redis unreachable when the delivery ends: the trail was never told to stop following it. Once Redis is back,
    the driver's next pings were kept as the delivered order's trail (SPEC 6: nothing after the delivery)."""
    rider, delivery = carrying
    with django_capture_on_commit_callbacks(execute=True):
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    clock.shift(10)
    factories.ping(rider, 38.7150, -9.14)
    reachable = settings.RELAY_LOCATION_REDIS_URL
    settings.RELAY_LOCATION_REDIS_URL = "redis://127.0.0.1:1/0"  # ------------------------------- Redis is down
    locations.reset_redis()
    clock.shift(10)
    with django_capture_on_commit_callbacks(execute=True):
        deliver_delivery(delivery.pk, actor=Actor.driver(rider))
    settings.RELAY_LOCATION_REDIS_URL = reachable  # --------------------------------------------- Redis is back
    locations.reset_redis()

    for lat in (38.7160, 38.7170):
        clock.shift(10)
        factories.ping(rider, lat, -9.14)
    assert _trail(delivery) == [(38.7150, -9.14)]


@pytest.mark.django_db
def test_a_trail_the_database_could_not_take_is_written_by_the_next_flush(carrying, clock, monkeypatch):
    """The flush takes the breadcrumbs out of the buffer, then writes them: the database failing in between (a
    killed connection, a failover) lost that stretch of the trail for good, and with it the evidence the ladder's
    "not moving toward pickup" rung and ops' map read."""
    rider, delivery = carrying
    for lat in (38.7150, 38.7160, 38.7170):
        clock.shift(10)
        factories.ping(rider, lat, -9.14)

    def connection_lost(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    with monkeypatch.context() as database_down:
        database_down.setattr(Breadcrumb.objects, "bulk_create", connection_lost)
        with pytest.raises(OperationalError):
            flush_breadcrumbs()
    clock.shift(10)
    factories.ping(rider, 38.7180, -9.14)

    assert _trail(delivery) == [(38.7150, -9.14), (38.7160, -9.14), (38.7170, -9.14), (38.7180, -9.14)]
