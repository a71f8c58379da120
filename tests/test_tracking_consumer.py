"""`/ws/track/<token>/` in process (any channel layer): refused for unknown and expired links; the state on
connect; then what the delivery's group is told, numbered per socket, with a `location` outside the
pickup-to-delivery window held back; another delivery's socket hears nothing."""

from datetime import timedelta

import pytest
from channels.db import DatabaseSyncToAsync
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from config.asgi import application
from core.audit import Actor
from deliveries.models import Delivery
from deliveries.services.offers import accept_offer
from deliveries.services.progress import deliver_delivery, pick_up_delivery
from deliveries.services.tracking import push_tracking
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
ENVELOPE = {"type", "id", "seq", "sent_at", "data"}
LOCATION = {"lat": 38.716, "lng": -9.138, "recorded_at": "2026-11-25T12:00:00Z"}


def _sync(fn):
    return DatabaseSyncToAsync(fn, thread_sensitive=False)


async def _open(token: str):
    socket = WebsocketCommunicator(application, f"/ws/track/{token}/")
    connected, code = await socket.connect()
    return socket, connected, code


def _two_deliveries():
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    merchant = factories.MerchantFactory()
    return rider, factories.assigned_delivery(merchant, rider), factories.new_delivery(merchant, "order-2")


async def test_unknown_and_expired_links_are_refused(zones):
    rider, delivery, _ = await _sync(_two_deliveries)()
    _, connected, code = await _open("not-a-real-token")
    assert (connected, code) == (False, 4404)

    def finished_two_days_ago():
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
        deliver_delivery(delivery.pk, actor=Actor.driver(rider))
        Delivery.objects.filter(pk=delivery.pk).update(finished_at=timezone.now() - timedelta(days=2))

    await _sync(finished_two_days_ago)()
    _, connected, code = await _open(delivery.tracking_token)
    assert (connected, code) == (False, 4404)


async def test_the_socket_gets_the_state_then_its_own_deliverys_messages_in_the_window(zones):
    rider, delivery, other = await _sync(_two_deliveries)()
    socket, connected, _ = await _open(delivery.tracking_token)
    other_socket, _, _ = await _open(other.tracking_token)
    assert connected
    first = await socket.receive_json_from()
    assert set(first) == ENVELOPE
    assert (first["type"], first["seq"], first["data"]["status"]) == ("status", 1, "assigned")
    assert (await other_socket.receive_json_from())["data"]["status"] == "pending"

    await _sync(push_tracking)(delivery.pk, "location", LOCATION)  # before pickup: not for the customer's eyes
    assert await socket.receive_nothing(timeout=0.2)

    await _sync(pick_up_delivery)(delivery.pk, actor=Actor.driver(rider))  # pushes `status` after commit
    picked = await socket.receive_json_from()
    assert (picked["type"], picked["seq"], picked["data"]["status"]) == ("status", 2, "picked_up")
    await _sync(push_tracking)(delivery.pk, "location", LOCATION)
    moved = await socket.receive_json_from()
    assert (moved["type"], moved["seq"], moved["data"]) == ("location", 3, LOCATION)

    await _sync(deliver_delivery)(delivery.pk, actor=Actor.driver(rider))
    delivered = await socket.receive_json_from()
    assert (delivered["data"]["status"], "location" in delivered["data"]) == ("delivered", False)
    await _sync(push_tracking)(delivery.pk, "location", LOCATION)  # a ping that raced the delivery
    assert await socket.receive_nothing(timeout=0.2)

    await socket.send_json_to({"type": "hello"})
    refused = await socket.receive_json_from()
    assert refused["data"]["code"] == "unknown_type"
    assert set(refused) == {"type", "id", "seq", "sent_at", "data"}  # API.md's envelope, numbered on
    assert refused["seq"] == delivered["seq"] + 1
    assert await other_socket.receive_nothing(timeout=0.2)
    await socket.disconnect()
    await other_socket.disconnect()


def test_nothing_is_pushed_to_a_tracking_link_before_it_is_given_out(zones, monkeypatch):
    """A delivery is created and offered in one transaction, and its link is first given in the answer to the
    create: nobody can be listening yet, so nothing is pushed then. Its next change is."""
    pushed = []
    monkeypatch.setattr(
        "deliveries.services.tracking.push_to_group",
        lambda group, envelope: pushed.append((envelope["type"], envelope["data"]["status"])),
    )
    factories.online_driver(*factories.east(0.5))
    delivery = factories.new_delivery(factories.MerchantFactory())
    assert delivery.status == "offered"
    assert pushed == []
    offer = delivery.offers.get()
    accept_offer(offer.pk, actor=Actor.driver(offer.driver))
    assert pushed == [("status", "assigned")]


async def test_an_address_over_the_tracking_budget_is_refused_and_another_behind_the_same_proxy_is_not(
    zones, monkeypatch, settings
):
    from core.throttling import TrackAddressThrottle

    monkeypatch.setattr(TrackAddressThrottle, "THROTTLE_RATES", {"track": "2/min"})
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    _, delivery, _ = await _sync(_two_deliveries)()

    async def open_from(address):
        forwarded = [(b"x-forwarded-for", f"203.0.113.9, {address}".encode())]  # the proxy appends the peer it saw
        socket = WebsocketCommunicator(application, f"/ws/track/{delivery.tracking_token}/", headers=forwarded)
        socket.scope["client"] = ("10.0.0.2", 50000)  # the proxy
        connected, code = await socket.connect()
        if connected:
            await socket.receive_json_from()  # the state on connect
            await socket.disconnect()
        return connected, code

    assert [(await open_from("2001:db8::1:1"))[0] for _ in range(2)] == [True, True]
    assert await open_from("2001:db8::1:1") == (False, 4429)
    assert (await open_from("2001:db8::1:2"))[0]
