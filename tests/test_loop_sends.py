"""Pushes made by a request go out from the server's event loop (core/loop_sends.py): the answer does not wait
for them, they arrive in the order they were made, and one that fails is logged without stopping the rest."""

import asyncio
import logging
import threading

import httpx
import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from core import loop_sends
from drivers.notifications import push_to_group
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)

db = database_sync_to_async


class HeldLayer:
    """The process's channel layer, with group sends held until `release` (a busy or slow layer)."""

    def __init__(self, layer) -> None:
        self.layer, self.release, self.waiting = layer, asyncio.Event(), 0

    async def group_send(self, group, message):
        self.waiting += 1
        await self.release.wait()
        await self.layer.group_send(group, message)


async def test_the_merchant_is_answered_before_the_offer_is_pushed_and_the_driver_still_gets_it(
    zones, settings, monkeypatch
):
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.SECURE_SSL_REDIRECT = False
    driver = await db(factories.online_driver)(*factories.CENTRO)
    driver_token = await db(lambda: Token.objects.get_or_create(user=driver.user)[0].key)()
    merchant = await db(factories.MerchantFactory)()
    merchant_token = await db(lambda: Token.objects.get_or_create(user=merchant.user)[0].key)()
    socket = WebsocketCommunicator(application, f"/ws/driver/?token={driver_token}")
    assert (await socket.connect())[0]
    held = HeldLayer(get_channel_layer())
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: held)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as c:
        async with asyncio.timeout(10):  # sending in the request's thread, the answer would wait for `release`
            response = await c.post(
                "/api/v1/deliveries",
                json=factories.delivery_payload("held-push"),
                headers={"Authorization": f"Token {merchant_token}"},
            )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "offered"
    assert held.waiting >= 1  # the offer's push is out, held by the layer
    assert await socket.receive_nothing(timeout=0.2)

    held.release.set()
    message = await socket.receive_json_from(timeout=3)
    assert message["type"] == "offer.created"
    assert message["data"]["delivery"]["id"] == response.json()["id"]
    await socket.disconnect()


async def test_pushes_handed_off_arrive_in_order_and_a_failed_one_is_logged(monkeypatch, caplog):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("handed-off", channel)

    class FailingThird:
        calls = 0

        async def group_send(self, group, message):
            self.calls += 1
            if self.calls == 3:
                raise ConnectionError("Redis is down")
            await layer.group_send(group, message)

    failing = FailingThird()
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: failing)
    loop = asyncio.get_running_loop()

    def request_work():  # as a request's after-commit hooks run, in a thread of the server
        with loop_sends.serving(loop):
            for seq in range(1, 31):
                push_to_group("handed-off", {"seq": seq})

    with caplog.at_level(logging.WARNING, logger="core.loop_sends"):
        await asyncio.to_thread(request_work)
        received = [(await layer.receive(channel))["message"]["seq"] for _ in range(29)]
    assert received == [seq for seq in range(1, 31) if seq != 3]
    assert "push to handed-off failed (Redis is down); the client will resume" in caplog.text


async def test_a_failed_push_runs_its_hook_and_a_failing_hook_stops_nothing(monkeypatch, caplog):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("hooked", channel)
    hooked = []

    class FailingFirst:
        calls = 0

        async def group_send(self, group, message):
            self.calls += 1
            if self.calls <= 2:
                raise ConnectionError("Redis is down")
            await layer.group_send(group, message)

    def broken_hook():
        raise RuntimeError("the database is gone too")

    failing = FailingFirst()
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: failing)
    loop = asyncio.get_running_loop()

    def request_work():
        with loop_sends.serving(loop):
            push_to_group("hooked", {"seq": 1}, unsent=broken_hook)
            push_to_group("hooked", {"seq": 2}, unsent=lambda: hooked.append(2))
            push_to_group("hooked", {"seq": 3}, unsent=lambda: hooked.append(3))

    with caplog.at_level(logging.WARNING, logger="core.loop_sends"):
        await asyncio.to_thread(request_work)
        async with asyncio.timeout(10):  # a hook that raised would stop the sends behind it: fail, not hang
            assert (await layer.receive(channel))["message"]["seq"] == 3
    assert hooked == [2]  # the hook of the push that failed, not of the one sent
    assert "the hook of a push that could not be sent failed" in caplog.text


def test_a_push_from_a_request_that_outlives_its_server_is_logged_and_its_hook_run(caplog):
    loop = asyncio.new_event_loop()
    loop.close()
    hooked = []
    with caplog.at_level(logging.WARNING, logger="core.loop_sends"), loop_sends.serving(loop):
        push_to_group("driver.gone", {"seq": 1}, unsent=lambda: hooked.append(1))
    assert "push to driver.gone not sent: the server is stopping" in caplog.text
    assert hooked == [1]  # e.g. the offer marked unheard: its expiry is not the driver's miss


async def _until(condition) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0)


async def _stop_the_server() -> None:
    """What uvicorn does as it stops, once its last request and socket are done: the lifespan's shutdown. Then
    it kills its own process (it raises the SIGTERM it caught), so what is not sent by then is lost."""
    said, inbox = [], asyncio.Queue()
    for message in ({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}):
        inbox.put_nowait(message)

    async def send(message):
        said.append(message["type"])

    await application({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    assert said == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_pushes_handed_off_as_the_server_stops_still_go_out(monkeypatch):
    """A rolling restart stops the server a merchant's request ran in: the offers it handed off go out to the
    drivers' sockets on the other servers, in order, before it exits."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("stopping", channel)
    held = HeldLayer(layer)
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: held)
    loop = asyncio.get_running_loop()

    def request_work():
        with loop_sends.serving(loop):
            for seq in range(1, 6):
                push_to_group("stopping", {"seq": seq})

    await asyncio.to_thread(request_work)
    await _until(lambda: held.waiting)  # the first send is out, held by a slow layer
    stopping = asyncio.create_task(_stop_the_server())
    await asyncio.sleep(0)  # the server waits for the held send
    held.release.set()
    await stopping

    async with asyncio.timeout(5):
        received = [(await layer.receive(channel))["message"]["seq"] for _ in range(5)]
    assert received == [1, 2, 3, 4, 5]


async def test_a_push_under_way_as_the_server_stops_is_not_sent_twice(monkeypatch):
    """A layer that took the message and is slow to answer (Redis ran the send; its reply is on the way): the
    stopping server cut the send short and sent it again, and the ops board's and tracking page's sockets, which
    number what they receive, passed it on twice."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("stopping", channel)

    class SlowToAnswer(HeldLayer):
        async def group_send(self, group, message):
            await self.layer.group_send(group, message)
            self.waiting += 1
            await self.release.wait()

    slow = SlowToAnswer(layer)
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: slow)
    loop = asyncio.get_running_loop()

    def request_work():
        with loop_sends.serving(loop):
            for seq in range(1, 4):
                push_to_group("stopping", {"seq": seq})

    await asyncio.to_thread(request_work)
    await _until(lambda: slow.waiting)  # the first is delivered, its answer not yet back
    stopping = asyncio.create_task(_stop_the_server())
    await asyncio.sleep(0)
    slow.release.set()
    await stopping

    async with asyncio.timeout(5):
        received = [(await layer.receive(channel))["message"]["seq"] for _ in range(3)]
    assert received == [1, 2, 3]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await layer.receive(channel)


async def test_a_hook_under_way_as_the_server_stops_runs_once(monkeypatch):
    """The layer is down and the first push's hook is still writing when the grace runs out: cut short, that
    push was counted as not sent yet, and its hook ran a second time (the offer marked unheard twice, logged twice)."""

    class Down:
        async def group_send(self, group, message):
            raise ConnectionError("Redis is down")

    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: Down())
    monkeypatch.setattr(loop_sends, "STOP_GRACE_S", 0.05)
    loop = asyncio.get_running_loop()
    writing, hooked = threading.Event(), []

    def slow_hook():
        writing.wait(5)
        hooked.append(1)

    def request_work():
        with loop_sends.serving(loop):
            push_to_group("down", {"seq": 1}, unsent=slow_hook)

    await asyncio.to_thread(request_work)
    loop.call_later(0.3, writing.set)  # the database answers, after the grace
    await _stop_the_server()
    await _until(lambda: writing.is_set())
    await db(lambda: None)()  # the hooks' thread is done with what it had

    assert hooked == [1]


async def test_pushes_a_stopping_server_cannot_send_in_its_grace_run_their_hooks(monkeypatch, caplog):
    held = HeldLayer(get_channel_layer())  # never released: the layer hangs
    monkeypatch.setattr("drivers.notifications.get_channel_layer", lambda: held)
    monkeypatch.setattr(loop_sends, "STOP_GRACE_S", 0.05)
    loop = asyncio.get_running_loop()
    hooked = []

    def request_work():
        with loop_sends.serving(loop):
            for seq in range(1, 4):
                push_to_group("hung", {"seq": seq}, unsent=lambda seq=seq: hooked.append(seq))

    await asyncio.to_thread(request_work)
    await _until(lambda: held.waiting)
    with caplog.at_level(logging.WARNING, logger="core.loop_sends"):
        await _stop_the_server()

    assert hooked == [1, 2, 3]  # three offers marked unheard: their expiries are not their drivers' misses
    assert "3 pushes not sent: the server is stopping; the clients will resume" in caplog.text


def test_outside_a_request_the_push_is_sent_in_place(monkeypatch):
    sent = []

    class Recording:
        async def group_send(self, group, message):
            sent.append((group, message["message"]))

    monkeypatch.setattr("drivers.notifications.get_channel_layer", Recording)
    push_to_group("driver.here", {"seq": 7})  # a Celery task, a management command: sent before it returns
    assert sent == [("driver.here", {"seq": 7})]
