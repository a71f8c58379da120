"""The websocket side of dispatch: offers reach drivers live, a reconnecting app resumes exactly, and ops see
escalations as they open."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from rest_framework.authtoken.models import Token

from config.asgi import application
from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import EscalationLevel, Offer, OfferStatus
from deliveries.services import ladder, offers
from deliveries.services.ladder import dispatch_waiting
from deliveries.services.progress import cancel_delivery
from drivers.notifications import driver_group, notify_driver
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


async def _socket(path: str) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _driver_socket(driver) -> WebsocketCommunicator:
    token = await db(lambda: Token.objects.get_or_create(user=driver.user)[0].key)()
    return await _socket(f"/ws/driver/?token={token}")


async def _next(communicator, type_: str) -> dict:
    while True:
        message = await communicator.receive_json_from(timeout=3)
        if message["type"] == type_:
            return message


async def test_decline_then_expiry_then_accept(zones, clock):
    drivers = [await db(factories.online_driver)(*factories.east(km)) for km in (0.3, 0.6, 0.9)]
    sockets = [await _driver_socket(d) for d in drivers]
    merchant = await db(factories.MerchantFactory)()
    delivery = await db(factories.new_delivery)(merchant, "three-drivers")

    first = await _next(sockets[0], "offer.created")
    assert first["data"]["delivery"]["id"] == str(delivery.pk)
    assert set(first) == {"type", "id", "seq", "sent_at", "data"}
    await db(offers.decline_offer)(first["data"]["id"], actor=Actor.driver(drivers[0]), reason="too_far")

    second = await _next(sockets[1], "offer.created")
    clock.shift(31)
    assert await db(offers.expire_offer)(second["data"]["id"])
    withdrawn = await _next(sockets[1], "offer.withdrawn")
    assert withdrawn["data"] == {"offer_id": second["data"]["id"], "reason": "expired", "cause": "expired"}

    third = await _next(sockets[2], "offer.created")
    await db(offers.accept_offer)(third["data"]["id"], actor=Actor.driver(drivers[2]))
    assigned = await _next(sockets[2], "delivery.assigned")
    assert assigned["data"]["status"] == "assigned"

    await db(delivery.refresh_from_db)()
    assert (delivery.status, delivery.driver_id) == ("assigned", drivers[2].pk)
    types = await db(
        lambda: list(
            AuditEvent.objects.for_delivery(delivery.pk)
            .filter(type__startswith="offer.")
            .values_list("type", "driver_id")
        )
    )()
    assert types == [
        ("offer.created", drivers[0].pk),
        ("offer.declined", drivers[0].pk),
        ("offer.created", drivers[1].pk),
        ("offer.expired", drivers[1].pk),
        ("offer.created", drivers[2].pk),
        ("offer.accepted", drivers[2].pk),
    ]
    for socket in sockets:
        await socket.disconnect()


async def _away_for_two_messages():
    """A driver's app sees an offer, goes away, and misses two messages: that offer withdrawn (cancelled) and a new
    one. Returns the driver, the merchant, the offer seen and the delivery of the one missed."""
    driver = await db(factories.online_driver)(*factories.east(0.3))
    merchant = await db(factories.MerchantFactory)()
    socket = await _driver_socket(driver)
    first = await db(factories.new_delivery)(merchant, "seen")
    seen = await _next(socket, "offer.created")
    await socket.disconnect()
    await db(cancel_delivery)(first.pk, actor=Actor.merchant(merchant), reason="customer cancelled")
    missed = await db(factories.new_delivery)(merchant, "missed")
    return driver, merchant, seen, missed


async def test_resume_replays_exactly_what_was_missed(zones):
    driver, _, seen, _ = await _away_for_two_messages()
    socket = await _driver_socket(driver)
    await socket.send_json_to({"type": "resume", "data": {"after_seq": seen["seq"]}})
    replayed = [await socket.receive_json_from(timeout=3) for _ in range(2)]
    assert [m["type"] for m in replayed] == ["offer.withdrawn", "offer.created"]
    assert [m["seq"] for m in replayed] == [seen["seq"] + 1, seen["seq"] + 2]
    # Asking again replays nothing twice: the stream is already delivered up to there.
    await socket.send_json_to({"type": "resume", "data": {"after_seq": seen["seq"]}})
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_a_push_that_arrives_before_the_resume_does_not_hide_what_was_missed(zones):
    driver, merchant, seen, missed = await _away_for_two_messages()
    # Back, and before its `resume` is handled, a live push: the new offer is withdrawn too.
    socket = await _driver_socket(driver)
    await db(cancel_delivery)(missed.pk, actor=Actor.merchant(merchant), reason="customer cancelled")
    live = await socket.receive_json_from(timeout=3)
    assert (live["type"], live["seq"]) == ("offer.withdrawn", seen["seq"] + 3)
    await socket.send_json_to({"type": "resume", "data": {"after_seq": seen["seq"]}})
    replayed = [await socket.receive_json_from(timeout=3) for _ in range(2)]
    assert [(m["type"], m["seq"]) for m in replayed] == [
        ("offer.withdrawn", seen["seq"] + 1),
        ("offer.created", seen["seq"] + 2),
    ]
    assert await socket.receive_nothing(timeout=0.3)  # the live one is not sent twice
    await socket.disconnect()


@pytest.fixture
def pushed_by_the_test(monkeypatch):
    """Messages are stored in the driver's stream and their pushes left to the test: pushes from two processes,
    each after its own commit, may reach Redis in either order."""
    monkeypatch.setattr("drivers.notifications.push_to_group", lambda *args, **kwargs: None)


def _stored(driver, *types: str) -> list[dict]:
    with transaction.atomic():
        return [notify_driver(driver.pk, type_, {"n": n}).envelope() for n, type_ in enumerate(types)]


async def test_a_live_push_that_crossed_a_newer_one_on_the_way_is_delivered_late_not_lost(zones, pushed_by_the_test):
    driver = await db(factories.online_driver)(*factories.east(0.3))
    socket = await _driver_socket(driver)
    offer, update = await db(_stored)(driver, "offer.created", "delivery.updated")
    for envelope in (update, offer):
        await get_channel_layer().group_send(driver_group(driver.pk), {"type": "stream.message", "message": envelope})
    received = [await socket.receive_json_from(timeout=3) for _ in range(2)]
    assert [(m["type"], m["seq"]) for m in received] == [
        ("delivery.updated", update["seq"]),
        ("offer.created", offer["seq"]),
    ]
    # What the app said it has is not sent again, nor what this socket already sent.
    await socket.send_json_to({"type": "resume", "data": {"after_seq": offer["seq"] - 1}})
    await get_channel_layer().group_send(driver_group(driver.pk), {"type": "stream.message", "message": offer})
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_a_pushed_message_older_than_the_resume_point_is_not_sent(zones, pushed_by_the_test):
    driver = await db(factories.online_driver)(*factories.east(0.3))
    socket = await _driver_socket(driver)
    (known,) = await db(_stored)(driver, "offer.created")
    # The app had it on its previous socket and says so; the push was on its way to this one too.
    await socket.send_json_to({"type": "resume", "data": {"after_seq": known["seq"]}})
    assert await socket.receive_nothing(timeout=0.3)
    await get_channel_layer().group_send(driver_group(driver.pk), {"type": "stream.message", "message": known})
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_a_resume_replays_all_that_was_missed_not_only_a_first_batch(zones, monkeypatch, pushed_by_the_test):
    monkeypatch.setattr("drivers.consumers.REPLAY_BATCH", 2)  # a long day's stream, in miniature
    driver = await db(factories.online_driver)(*factories.east(0.3))
    socket = await _driver_socket(driver)
    missed = await db(_stored)(
        driver, "offer.created", "offer.withdrawn", "offer.created", "offer.withdrawn", "offer.created"
    )
    await socket.send_json_to({"type": "resume", "data": {"after_seq": missed[0]["seq"] - 1}})
    replayed = [await socket.receive_json_from(timeout=3) for _ in missed]
    assert [m["seq"] for m in replayed] == [m["seq"] for m in missed]
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_locations_sent_over_the_socket_are_recorded(zones, settings):
    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = await db(factories.online_driver)(*factories.east(0.3))
    socket = await _driver_socket(driver)
    from django.utils import timezone

    point = {"lat": 38.7161, "lng": -9.1411, "recorded_at": timezone.now().isoformat()}
    await socket.send_json_to({"type": "location", "data": point})
    await socket.send_json_to({"type": "location", "data": {"lat": 500}})
    error = await _next(socket, "error")  # handled in order: the first was recorded before this answer
    assert error["data"]["code"] == "invalid"
    await db(driver.refresh_from_db)()
    assert (driver.last_lat, driver.last_lng) == (38.7161, -9.1411)
    await socket.disconnect()


async def test_an_offline_drivers_socket_pings_are_dropped(zones, settings):
    from django.utils import timezone

    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = await db(factories.DriverFactory)()
    socket = await _driver_socket(driver)
    lat, lng = factories.CENTRO
    point = {"lat": lat, "lng": lng, "recorded_at": timezone.now().isoformat()}
    await socket.send_json_to({"type": "location", "data": point})
    await socket.send_json_to({"type": "probe"})  # answered after the location is handled
    await _next(socket, "error")
    await db(driver.refresh_from_db)()
    assert (driver.last_lat, driver.last_seen_at) == (None, None)
    await socket.disconnect()


async def test_the_ladder_escalates_live_to_ops_and_closes_when_a_driver_accepts(zones, clock):
    ops = await db(factories.OpsUserFactory)()
    ops_token = await db(lambda: Token.objects.get_or_create(user=ops)[0].key)()
    ops_socket = await _socket(f"/ws/ops/?token={ops_token}")
    merchant = await db(factories.MerchantFactory)(webhook_url="https://merchant.invalid/hook")
    declining = await db(factories.online_driver)(*factories.east(0.5))  # the only driver in reach says no
    delivery = await db(factories.new_delivery)(merchant, "declined")
    offer = await db(lambda: Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING))()
    await db(offers.decline_offer)(offer.pk, actor=Actor.driver(declining), reason="busy")
    await db(delivery.refresh_from_db)()
    assert delivery.status == "pending"

    async def level_after(seconds):
        clock.shift(seconds)
        await db(ladder.run_ladder)()
        await db(delivery.refresh_from_db)()
        return delivery.escalation_level

    assert await level_after(119) == EscalationLevel.NONE
    assert await level_after(1) == EscalationLevel.WARN  # 2 min: warn, search widened
    warned = await db(lambda: AuditEvent.objects.get(delivery_id=delivery.pk, type="escalation.warned"))()
    assert "widened" in warned.payload["detail"]
    assert await level_after(179) == EscalationLevel.WARN
    assert await level_after(1) == EscalationLevel.ALERT  # 5 min: an escalation opens for ops
    opened = await _next(ops_socket, "escalation.opened")
    assert opened["data"]["delivery_id"] == str(delivery.pk)
    assert (opened["data"]["level"], opened["data"]["reason"]) == (EscalationLevel.ALERT, "unassigned")
    assert opened["seq"] == 1
    assert await level_after(300) == EscalationLevel.CRITICAL  # 10 min: critical, and the merchant is told
    raised = await _next(ops_socket, "escalation.updated")
    assert raised["data"]["level"] == EscalationLevel.CRITICAL
    webhook_types = await db(lambda: list(delivery.webhooks.values_list("type", flat=True)))()
    assert "delivery.escalated" in webhook_types

    driver = await db(factories.online_driver)(*factories.east(0.3))
    assert await db(dispatch_waiting)() == 1
    offer = await db(lambda: Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING))()
    await db(offers.accept_offer)(offer.pk, actor=Actor.driver(driver))
    closed = await _next(ops_socket, "escalation.updated")
    assert closed["data"]["status"] == "resolved"
    escalation = await db(lambda: delivery.escalations.get())()
    assert escalation.open_seconds == 300  # opened at 5 min, closed at 10 min on the frozen clock
    await ops_socket.disconnect()


async def test_ops_hear_of_a_break_over_the_limit_while_it_lasts(zones, clock):
    from deliveries.services.availability import start_break
    from deliveries.tasks import flag_long_breaks

    ops = await db(factories.OpsUserFactory)()
    ops_token = await db(lambda: Token.objects.get_or_create(user=ops)[0].key)()
    ops_socket = await _socket(f"/ws/ops/?token={ops_token}")
    driver = await db(factories.online_driver)(*factories.east(0.3))
    await db(start_break)(driver.pk, actor=Actor.driver(driver))
    clock.shift(31 * 60)
    await db(flag_long_breaks)()
    told = await _next(ops_socket, "driver.break_over_limit")
    assert (told["data"]["driver_id"], told["data"]["seconds"], told["data"]["limit_s"]) == (str(driver.pk), 1860, 1800)
    await ops_socket.disconnect()


async def test_ops_socket_refuses_non_staff(zones):
    merchant = await db(factories.MerchantFactory)()
    token = await db(lambda: Token.objects.get_or_create(user=merchant.user)[0].key)()
    communicator = WebsocketCommunicator(application, f"/ws/ops/?token={token}")
    connected, code = await communicator.connect()
    assert not connected and code == 4403


async def test_ops_see_zone_pressure(zones):
    from deliveries.tasks import take_zone_snapshots

    ops = await db(factories.OpsUserFactory)()
    token = await db(lambda: Token.objects.get_or_create(user=ops)[0].key)()
    socket = await _socket(f"/ws/ops/?token={token}")
    merchant = await db(factories.MerchantFactory)()
    await db(factories.new_delivery)(merchant, "waiting")  # nobody online: Centro is under pressure
    await db(take_zone_snapshots)()
    message = await _next(socket, "zone.pressure")
    centro = next(z for z in message["data"]["zones"] if z["code"] == "centro")
    assert (centro["open_deliveries"], centro["available_drivers"], centro["band"]) == (1, 0, "critical")
    await socket.disconnect()


async def _ping_and_search(socket) -> list[str]:
    """Sends a location over the driver's socket, then who a search at that spot finds."""
    from django.utils import timezone

    from drivers.locations import nearest_drivers

    point = {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": timezone.now().isoformat()}
    await socket.send_json_to({"type": "location", "data": point})
    await socket.send_json_to({"type": "probe"})  # answered after the location is handled
    await _next(socket, "error")
    hits = await db(nearest_drivers)(*factories.CENTRO, radius_km=1, limit=5, zone_codes=["centro"])
    return [hit.driver_id for hit in hits]


@pytest.mark.redis
async def test_socket_pings_make_a_driver_searchable_only_while_online(zones):

    from deliveries.services.availability import go_online
    from drivers import locations

    driver = await db(factories.DriverFactory)()
    socket = await _driver_socket(driver)

    assert await _ping_and_search(socket) == []  # offline: dropped
    assert await db(locations.flush_positions)() == 0  # not even buffered for the database
    await db(go_online)(driver.pk, actor=Actor.driver(driver))
    assert (await _next(socket, "driver.state"))["data"]["state"] == "available"
    assert await _ping_and_search(socket) == [str(driver.pk)]  # no wait for a re-read: the stream said so
    await socket.disconnect()


@pytest.mark.redis
async def test_a_state_change_the_socket_missed_is_caught_up_at_the_credential_check(zones, monkeypatch):
    """The socket knows its driver's state from `driver.state` messages (at most once); the credential check
    (every 30 s) reads the state with the token, so a lost message costs at most that long."""

    from core.tasks import recheck_socket_credentials
    from drivers import consumers
    from drivers.models import Driver

    # The check arrives through the channel layer and reads in a thread, not through the socket: the test waits
    # until it is done (a fixed 3 s for it to show was too short on a loaded machine).
    checked = asyncio.Event()
    real_recheck = consumers.DriverConsumer.recheck_all.__func__

    async def recheck_all(cls, sockets):
        try:
            return await real_recheck(cls, sockets)
        finally:
            checked.set()

    monkeypatch.setattr(consumers.DriverConsumer, "recheck_all", classmethod(recheck_all))
    driver = await db(factories.DriverFactory)()
    socket = await _driver_socket(driver)

    await db(lambda: Driver.objects.filter(pk=driver.pk).update(state="available"))()  # no message sent
    assert await _ping_and_search(socket) == []  # the socket still believes it offline
    await db(recheck_socket_credentials)()
    await asyncio.wait_for(checked.wait(), 60)
    assert await _ping_and_search(socket) == [str(driver.pk)]
    await socket.disconnect()
