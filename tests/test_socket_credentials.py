"""An open websocket lives only as long as its credentials: a revoked or expired token, a deactivated user or
ops who lost the right to the feed see their socket closed at the next credential check (every 30 s)."""

import asyncio
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from config.asgi import application
from config.celery import app as celery_app
from core.audit import Actor
from core.tasks import recheck_socket_credentials
from core.tokens import issue_token
from core.ws import CLOSE_UNAUTHORIZED
from deliveries.services.availability import go_online
from drivers import consumers
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async


async def _open(path: str, user) -> tuple[WebsocketCommunicator, str]:
    token = await db(lambda: issue_token(user).key)()
    socket = WebsocketCommunicator(application, f"{path}?token={token}")
    connected, _ = await socket.connect()
    assert connected
    return socket, token


async def _recheck() -> None:
    await db(recheck_socket_credentials)()


async def _closed_with(socket: WebsocketCommunicator) -> int:
    # A check's close goes through the channel layer, a database read in a thread and the socket's own task: on a
    # loaded machine that can take seconds. It returns as soon as the close arrives.
    output = await socket.receive_output(timeout=10)
    assert output["type"] == "websocket.close"
    return output["code"]


async def test_logout_closes_the_sockets_opened_with_that_token(zones):
    driver = await db(factories.DriverFactory)()
    other = await db(factories.DriverFactory)()
    socket, token = await _open("/ws/driver/", driver.user)
    untouched, _ = await _open("/ws/driver/", other.user)

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert (await db(api.post)("/api/v1/auth/logout")).status_code == 204
    await _recheck()

    assert await _closed_with(socket) == CLOSE_UNAUTHORIZED
    assert await untouched.receive_nothing()
    await untouched.disconnect()


async def test_the_check_reaches_sockets_opened_after_all_earlier_ones_closed(zones):
    """Each server process checks its sockets together while it holds any; it starts again with the next."""
    first = await db(factories.DriverFactory)()
    driver = await db(factories.DriverFactory)()
    earlier, _ = await _open("/ws/driver/", first.user)
    await earlier.disconnect()
    socket, _ = await _open("/ws/driver/", driver.user)

    driver.user.is_active = False
    await db(driver.user.save)()
    await _recheck()
    assert await _closed_with(socket) == CLOSE_UNAUTHORIZED


async def test_a_deactivated_users_socket_closes(zones):
    driver = await db(factories.DriverFactory)()
    socket, _ = await _open("/ws/driver/", driver.user)
    await _recheck()
    assert await socket.receive_nothing()  # still valid: nothing happens

    driver.user.is_active = False
    await db(driver.user.save)()
    await _recheck()
    assert await _closed_with(socket) == CLOSE_UNAUTHORIZED


async def test_a_socket_closes_when_its_token_expires(zones, clock):
    driver = await db(factories.DriverFactory)()
    token = await db(lambda: issue_token(driver.user).key)()
    clock.shift(timedelta(days=28))  # the app reconnects now and then; this socket opens two days before expiry
    socket = WebsocketCommunicator(application, f"/ws/driver/?token={token}")
    assert (await socket.connect())[0]
    for _ in range(2):  # a socket open for longer than the channel layer keeps group members (a day)
        clock.shift(timedelta(hours=23))
        await _recheck()
        assert await socket.receive_nothing()
    clock.shift(timedelta(hours=2) - timedelta(seconds=1))
    await _recheck()
    assert await socket.receive_nothing()
    clock.shift(timedelta(seconds=1))
    await _recheck()
    assert await _closed_with(socket) == CLOSE_UNAUTHORIZED


async def test_ops_who_lose_the_right_to_the_feed_are_disconnected(zones):
    ops = await db(factories.OpsUserFactory)()
    socket, _ = await _open("/ws/ops/", ops)

    def demote():
        ops.groups.clear()
        ops.user_permissions.add(Permission.objects.get(codename="view_delivery"))

    await db(demote)()
    await _recheck()
    assert await _closed_with(socket) == CLOSE_UNAUTHORIZED


async def test_logging_out_of_the_console_closes_the_live_boards_socket(zones):
    """The board's socket rides the console's session: it kept streaming the ops feed after the logout, as the
    session read at connect still named the user."""
    browser = Client()
    await db(browser.force_login)(await db(factories.OpsUserFactory)())
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(application, "/ws/ops/", headers=[(b"cookie", cookie)])
    assert (await socket.connect())[0]

    await db(browser.logout)()
    await _recheck()
    assert await _closed_with(socket) == CLOSE_UNAUTHORIZED


async def test_an_expired_token_cannot_open_a_socket(zones, clock):
    driver = await db(factories.DriverFactory)()
    token = await db(lambda: issue_token(driver.user).key)()
    clock.shift(timedelta(days=31))
    socket = WebsocketCommunicator(application, f"/ws/driver/?token={token}")
    connected, code = await socket.connect()
    assert not connected and code == CLOSE_UNAUTHORIZED


@pytest.mark.django_db  # not transactional: the schedule is a migration's data, which a flush would remove
def test_the_check_runs_at_least_every_minute():
    schedule = PeriodicTask.objects.get(task="core.tasks.recheck_socket_credentials")
    assert schedule.enabled
    assert schedule.interval.period == "seconds" and schedule.interval.every <= 30
    assert "core.tasks.recheck_socket_credentials" in celery_app.tasks


async def test_a_credential_check_does_not_undo_a_state_change_that_arrived_while_it_read(zones, settings, monkeypatch):
    """The check also refreshes whether the driver is online; a `driver.state` the socket received while the
    check was reading is newer than what it read: a driver who just went online is kept searchable."""
    settings.RELAY_LOCATION_REDIS_URL = ""  # pings go to the database: what is recorded is visible there
    driver = await db(factories.DriverFactory)()  # offline
    socket, _ = await _open("/ws/driver/", driver.user)
    read, release, checked = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_read, real_recheck = consumers._credentials, consumers.DriverConsumer.recheck_all.__func__

    async def read_then_wait(keys):
        entries = await real_read(keys)  # the driver is still offline here
        read.set()
        await release.wait()
        return entries

    async def recheck_all(cls, sockets):
        try:
            return await real_recheck(cls, sockets)
        finally:
            checked.set()

    monkeypatch.setattr(consumers, "_credentials", read_then_wait)
    monkeypatch.setattr(consumers.DriverConsumer, "recheck_all", classmethod(recheck_all))
    await _recheck()
    await asyncio.wait_for(read.wait(), 3)
    await db(go_online)(driver.pk, actor=Actor.driver(driver))
    while (await socket.receive_json_from(timeout=3))["type"] != "driver.state":
        pass  # the socket now knows the driver is online
    release.set()
    await asyncio.wait_for(checked.wait(), 3)

    lat, lng = factories.CENTRO
    await socket.send_json_to({"type": "location", "data": {"lat": lat, "lng": lng, "recorded_at": _now()}})
    await socket.send_json_to({"type": "probe"})  # answered after the location is handled
    while (await socket.receive_json_from(timeout=3))["type"] != "error":
        pass
    await db(driver.refresh_from_db)()
    assert (driver.last_lat, driver.last_lng) == (lat, lng)
    await socket.disconnect()


def _now() -> str:
    return timezone.now().isoformat()
