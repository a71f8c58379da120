"""What an open socket holds while it waits (issue 12: ≤ 15 KB a driver socket): core.aio's queue and gate, the
channel layer's inbox channels, and the socket loop that reads one inbox for both its client and its channel."""

import asyncio
import uuid

import pytest
import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token
from uvicorn.protocols.utils import ClientDisconnected

from config.asgi import application
from core.aio import Gate, Inbox
from core.channel_layer import PubSubChannelLayer, _LoopLayer
from core.ws import JsonSocket
from tests import factories


async def _turn() -> None:
    """Let every task that is ready run once (no time passes)."""
    await asyncio.sleep(0)


async def test_an_inbox_hands_items_out_in_order_and_its_reader_waits_for_the_next():
    inbox = Inbox()
    inbox.put_nowait("first")
    inbox.put_nowait("second")
    assert [await inbox.get(), inbox.get_nowait()] == ["first", "second"]
    assert inbox.empty()
    with pytest.raises(asyncio.QueueEmpty):
        inbox.get_nowait()

    reading = asyncio.ensure_future(inbox.get())
    await _turn()
    assert not reading.done()
    inbox.put_nowait("third")
    assert await reading == "third"


async def test_an_item_put_for_a_reader_that_is_cancelled_stays_for_the_next_read():
    inbox = Inbox()
    reading = asyncio.ensure_future(inbox.get())
    await _turn()
    inbox.put_nowait("kept")
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert await inbox.get() == "kept"


async def test_an_inbox_refuses_a_second_reader_at_once():
    inbox = Inbox()
    first = asyncio.ensure_future(inbox.get())
    await _turn()
    with pytest.raises(RuntimeError, match="one reader"):
        await inbox.get()
    inbox.put_nowait("for the first")
    assert await first == "for the first"


async def test_a_gate_lets_waiters_through_only_while_it_is_open():
    gate = Gate()
    waiters = [asyncio.ensure_future(gate.wait()) for _ in range(3)]
    await _turn()
    assert not any(waiter.done() for waiter in waiters)
    waiters[0].cancel()
    gate.set()
    assert await asyncio.gather(*waiters[1:]) == [True, True]
    assert waiters[0].cancelled()
    assert await gate.wait() is True  # open: at once
    gate.clear()
    late = asyncio.ensure_future(gate.wait())
    await _turn()
    assert not late.done()
    gate.set()
    assert await late is True


def _layer(settings) -> PubSubChannelLayer:
    hosts = [{"address": settings.REDIS_URL, "socket_timeout": 30}]
    return PubSubChannelLayer(hosts=hosts, prefix=f"test-inbox-{uuid.uuid4().hex}")


async def _subscribers(settings, channel: str) -> int:
    client = aioredis.from_url(settings.REDIS_URL)
    try:
        return dict(await client.pubsub_numsub(channel))[channel.encode()]
    finally:
        await client.aclose()


async def _until(predicate, timeout_s: float = 5.0) -> bool:
    """Polls a state another process (Redis) reaches; True once it holds, False at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.mark.redis
async def test_an_inbox_channel_gets_its_own_and_its_groups_messages_until_it_is_closed(settings):
    layer = _layer(settings)
    channel, inbox = await layer.new_inbox()
    await layer.group_add("riders", channel)
    await layer.send(channel, {"type": "to.the.channel"})
    await layer.group_send("riders", {"type": "to.the.group"})
    received = [layer.deserialize(await asyncio.wait_for(inbox.get(), 5)) for _ in range(2)]
    assert [message["type"] for message in received] == ["to.the.channel", "to.the.group"]
    assert await _subscribers(settings, channel) == 1

    await layer.close_inbox(channel)

    async def unsubscribed() -> bool:
        return await _subscribers(settings, channel) == 0

    assert await _until(unsubscribed)
    await layer.close_inbox(channel)  # twice is harmless: a socket's loop closes it on every way out
    await layer.flush()


def _driver_token() -> str:
    driver = factories.DriverFactory()
    return Token.objects.get_or_create(user=driver.user)[0].key


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
async def test_a_closed_driver_socket_leaves_no_subscription_behind(zones, settings):
    """The socket's channel and its driver group are unsubscribed when it closes: the loop that reads its inbox
    closes it as Channels' receive did when cancelled. (Settings name the pub/sub layer whenever REDIS_URL is set.)"""
    layer = get_channel_layer()
    assert isinstance(layer, PubSubChannelLayer)
    client = aioredis.from_url(settings.REDIS_URL)
    prefix = layer._kwargs["prefix"]

    async def channels() -> set[bytes]:
        return set(await client.pubsub_channels(f"{prefix}*"))

    try:
        token = await database_sync_to_async(_driver_token)()
        before = await channels()
        socket = WebsocketCommunicator(application, f"/ws/driver/?token={token}")
        assert (await socket.connect())[0]
        await socket.send_json_to({"type": "bogus"})  # handled: the socket is past its connect
        assert (await socket.receive_json_from())["data"]["code"] == "unknown_type"
        opened = await channels() - before
        # Its channel and its driver's group (and the process's credential-check group, unless already there).
        assert len(opened) >= 2, opened

        await socket.disconnect()

        async def all_gone() -> bool:
            return not (await channels() & opened)

        assert await _until(all_gone), await channels() & opened
    finally:
        await client.aclose()


async def test_a_channel_that_redis_cannot_subscribe_is_not_kept():
    """Redis down: each refused socket's retry would otherwise leave its channel's inbox in the layer for good."""
    layer = PubSubChannelLayer(hosts=[{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 1}])
    for _ in range(3):
        with pytest.raises(redis.exceptions.ConnectionError):
            await layer.new_inbox()
    assert layer._get_layer().channels == {}


class _Server:
    """An ASGI server's side of one websocket, as uvicorn behaves: once the app sends its close, the disconnect is
    queued for it and a further send raises; once the client is gone, a send raises ClientDisconnected."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.sent: list[dict] = []
        self.closed = self.client_gone = False

    async def receive(self) -> dict:
        return await self.incoming.get()

    async def send(self, message: dict) -> None:
        if self.client_gone:
            raise ClientDisconnected
        if self.closed:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}', after sending 'websocket.close'.")
        self.sent.append(message)
        if message["type"] == "websocket.close":
            self.closed = True
            self.incoming.put_nowait({"type": "websocket.disconnect", "code": message["code"]})


class _Socket(JsonSocket):
    kind = "test"
    left_with = None

    async def connect(self):
        await self.channel_layer.group_add("riders", self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await super().disconnect(code)
        self.left_with = code
        await self.channel_layer.group_discard("riders", self.channel_name)

    async def closing_time(self, event):
        await self.close(code=4401)

    async def stream_message(self, event):
        await self.send_json(event["message"])


async def _serving(settings, monkeypatch) -> tuple[PubSubChannelLayer, _Server, _Socket, asyncio.Task, Inbox]:
    """A _Socket on a fake server and the pub/sub layer, accepted; and its inbox, to put messages in at once."""
    layer, inboxes = _layer(settings), []
    new_inbox = _LoopLayer.new_inbox

    async def kept(self, prefix="specific."):
        channel, inbox = await new_inbox(self, prefix)
        inboxes.append(inbox)
        return channel, inbox

    monkeypatch.setattr(_LoopLayer, "new_inbox", kept)
    monkeypatch.setattr("core.ws.get_channel_layer", lambda alias=None: layer)
    server, socket = _Server(), _Socket()
    scope = {"type": "websocket", "path": "/ws/test/", "query_string": b"", "headers": []}
    running = asyncio.ensure_future(socket(scope, server.receive, server.send))

    async def accepted() -> bool:
        return bool(server.sent)

    assert await _until(accepted)
    return layer, server, socket, running, inboxes[0]


@pytest.mark.redis
async def test_a_push_behind_the_sockets_own_close_is_dropped_and_its_disconnect_still_runs(settings, monkeypatch):
    """A revoked socket closes itself; a push already queued behind that is not sent (the server refuses sends
    after a close), and the socket still leaves its groups when the disconnect comes."""
    layer, server, socket, running, inbox = await _serving(settings, monkeypatch)
    inbox.put_nowait(layer.serialize({"type": "closing.time"}))
    inbox.put_nowait(layer.serialize({"type": "stream.message", "message": {"type": "offer.created"}}))
    await asyncio.wait_for(running, 10)
    assert [message["type"] for message in server.sent] == ["websocket.accept", "websocket.close"]
    assert socket.left_with == 4401
    await layer.flush()


@pytest.mark.redis
async def test_a_socket_whose_client_is_gone_still_leaves_its_groups(settings, monkeypatch):
    """A push to a client that went away mid-message fails; the socket still runs its disconnect (groups left,
    count lowered) rather than ending without it."""
    layer, server, socket, running, inbox = await _serving(settings, monkeypatch)
    server.client_gone = True
    inbox.put_nowait(layer.serialize({"type": "stream.message", "message": {"type": "offer.created"}}))
    with pytest.raises(ClientDisconnected):
        await asyncio.wait_for(running, 10)
    assert socket.left_with == 1006
    await layer.flush()
