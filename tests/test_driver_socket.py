"""`/ws/driver/`: only a valid driver token joins, and only its own stream."""

import uuid
from datetime import datetime

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(token: str):
    communicator = WebsocketCommunicator(application, f"/ws/driver/?token={token}")
    connected, code = await communicator.connect()
    return communicator, connected, code


def _token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


async def _driver_socket() -> WebsocketCommunicator:
    """A new driver's socket, connected."""
    from channels.db import database_sync_to_async

    driver = await database_sync_to_async(factories.DriverFactory)()
    communicator, connected, _ = await _connect(await database_sync_to_async(_token_for)(driver.user))
    assert connected
    return communicator


async def test_refuses_missing_wrong_and_non_driver_tokens(zones):
    from channels.db import database_sync_to_async

    merchant_token = await database_sync_to_async(lambda: _token_for(factories.MerchantFactory().user))()
    for token in ("", "not-a-token", merchant_token):
        communicator, connected, code = await _connect(token)
        assert not connected
        assert code == 4401
        await communicator.disconnect()


async def test_a_driver_joins_its_own_stream(zones):

    communicator = await _driver_socket()
    await communicator.send_json_to({"type": "bogus"})
    reply = await communicator.receive_json_from()
    assert reply["type"] == "error" and reply["data"]["code"] == "unknown_type"
    # API.md's envelope, like every server message; its seq takes none of the stream's (resume replays by them).
    assert set(reply) == {"type", "id", "seq", "sent_at", "data"}
    assert uuid.UUID(reply["id"]) and datetime.fromisoformat(reply["sent_at"]) and reply["seq"] == 0
    await communicator.disconnect()


async def test_malformed_messages_are_answered_and_the_socket_stays_open(zones):

    communicator = await _driver_socket()
    malformed = [
        ({"text_data": '{"type":"resume","data":[1]}'}, "invalid"),
        ({"text_data": '{"type":"resume","data":{"after_seq":true}}'}, "invalid"),  # not "from 1": a bool is no seq
        ({"text_data": '{"type":"location","data":"here"}'}, "invalid"),
        (
            {"text_data": '{"type":"location","data":{"lat":NaN,"lng":0,"recorded_at":"2026-01-01T00:00:00Z"}}'},
            "invalid",
        ),
        (
            {"text_data": '{"type":"location","data":{"lat":true,"lng":false,"recorded_at":"2026-01-01T00:00:00Z"}}'},
            "invalid",
        ),
        ({"text_data": "not json"}, "invalid_message"),
        ({"text_data": "[1, 2]"}, "invalid_message"),
        ({"text_data": "[" * 5000 + "]" * 5000}, "invalid_message"),  # deeper than Python's stack: not a crash
        ({"bytes_data": b"\x00\x01"}, "invalid_message"),
    ]
    for frame, code in malformed:
        await communicator.send_to(**frame)
        reply = await communicator.receive_json_from()
        assert (reply["type"], reply["data"]["code"]) == ("error", code), frame
    await communicator.send_json_to({"type": "resume", "data": {"after_seq": 0}})
    assert await communicator.receive_nothing()  # still open, and nothing was missed
    await communicator.disconnect()


async def test_a_message_costs_no_thread_round_trip(zones, monkeypatch):
    """Channels' dispatch hops to a thread before every message to close stale database connections; the
    sockets' database calls do that themselves, so a message that needs no database never leaves the loop."""
    from channels import consumer

    hops = []

    async def close_old_connections():
        hops.append(1)

    monkeypatch.setattr(consumer, "aclose_old_connections", close_old_connections)
    communicator = await _driver_socket()
    for _ in range(3):
        await communicator.send_json_to({"type": "bogus"})
        assert (await communicator.receive_json_from())["data"]["code"] == "unknown_type"
    assert hops == []
    await communicator.disconnect()


async def test_a_failing_handler_answers_an_error_and_is_logged(zones, monkeypatch, caplog):

    from drivers import consumers

    async def broken(driver_id, after_seq):
        raise RuntimeError("database fell over")

    monkeypatch.setattr(consumers, "_missed", broken)
    communicator = await _driver_socket()
    await communicator.send_json_to({"type": "resume", "data": {"after_seq": 0}})
    reply = await communicator.receive_json_from()
    assert (reply["type"], reply["data"]["code"]) == ("error", "server_error")
    assert "database fell over" in caplog.text
    await communicator.send_json_to({"type": "bogus"})
    assert (await communicator.receive_json_from())["data"]["code"] == "unknown_type"  # still open
    await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws/nowhere/", "/ws/driver/extra/", "/"])
async def test_an_unrouted_path_is_refused_at_the_handshake(path):
    communicator = WebsocketCommunicator(application, path)
    connected, code = await communicator.connect()
    assert (connected, code) == (False, 4404)
    await communicator.disconnect()


async def test_locations_over_the_apis_budget_are_refused_and_not_recorded(zones, monkeypatch, clock):
    from channels.db import database_sync_to_async as db
    from django.utils import timezone

    from core.throttling import UserThrottle
    from drivers.locations import last_position

    monkeypatch.setattr(UserThrottle, "THROTTLE_RATES", {"user": "3/min"})
    driver = await db(factories.online_driver)(*factories.CENTRO)
    socket, connected, _ = await _connect(await db(lambda: _token_for(driver.user))())
    assert connected

    async def send(lat: float) -> dict:
        point = {"lat": lat, "lng": factories.CENTRO[1], "recorded_at": timezone.now().isoformat()}
        await socket.send_json_to({"type": "location", "data": point})
        await socket.send_json_to({"type": "probe"})  # answered once the location is handled
        return await socket.receive_json_from(timeout=3)

    async def position() -> float:
        await db(driver.refresh_from_db)()
        return (await db(last_position)(driver)).lat

    lat = factories.CENTRO[0]
    for step in (0.001, 0.002, 0.003):
        assert (await send(lat + step))["data"]["code"] == "unknown_type"  # the probe's answer: nothing else
    refused = await send(lat + 0.004)
    assert refused["type"] == "error" and refused["data"]["code"] == "throttled"
    assert "60 s" in refused["data"]["detail"]
    assert (await socket.receive_json_from(timeout=3))["data"]["code"] == "unknown_type"
    assert await position() == pytest.approx(lat + 0.003)

    clock.shift(61)
    assert (await send(lat + 0.005))["data"]["code"] == "unknown_type"
    assert await position() == pytest.approx(lat + 0.005)
    await socket.disconnect()
