"""Websockets in production mode: a real `manage.py serve` on the Redis channel layer and PostgreSQL, driven
through the public API only. A socket that hears nothing for longer than any library timeout still receives what
is pushed to it afterwards."""

import http.client
import io
import json
import secrets
from datetime import UTC, datetime

import httpx
import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from deliveries.tasks import take_zone_snapshots
from tests import factories, faults
from tests.servers import production_env, running_server

QUIET_S = 15  # three times the 5 s read timeout that once closed every idle socket


def _login(url: str, username: str) -> str:
    answer = httpx.post(f"{url}/api/v1/auth/token", json={"username": username, "password": "secret-pass-123"})
    assert answer.status_code == 200, answer.text
    return answer.json()["token"]


def _ping_over(app: http.client.HTTPConnection, auth: dict) -> int:
    """POST one location over the app's open HTTP/1.1 connection; the status. A connection the server closed
    meanwhile fails here (RemoteDisconnected): http.client opens no new one behind the caller's back."""
    point = {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": datetime.now(UTC).isoformat()}
    headers = auth | {"Content-Type": "application/json"}
    app.request("POST", "/api/v1/driver/locations", json.dumps({"points": [point]}), headers)
    answer = app.getresponse()
    answer.read()
    return answer.status


def _create_accounts() -> None:
    out = io.StringIO()
    call_command("create_merchant", "shop", "--password", "secret-pass-123", stdout=out)
    call_command("create_driver", "rider", "--password", "secret-pass-123", "--zone", "centro", stdout=out)
    call_command("create_ops", "desk", "--password", "secret-pass-123", stdout=out)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_quiet_driver_and_ops_sockets_still_receive_what_is_pushed_later(zones, settings, tmp_path):
    _create_accounts()
    log = tmp_path / "server.log"
    with running_server(production_env(settings), log) as url:
        driver = {"Authorization": f"Token {_login(url, 'rider')}"}
        assert httpx.post(f"{url}/api/v1/driver/availability", json={"state": "available"}, headers=driver).is_success
        point = {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": datetime.now(UTC).isoformat()}
        assert httpx.post(f"{url}/api/v1/driver/locations", json={"points": [point]}, headers=driver).status_code == 202
        ws_url = url.replace("http", "ws", 1)

        with (
            connect(f"{ws_url}/ws/driver/?token={driver['Authorization'].split()[1]}") as driver_socket,
            connect(f"{ws_url}/ws/ops/?token={_login(url, 'desk')}") as ops_socket,
        ):
            # The client offered permessage-deflate (the websockets default, as browsers do); the server declines:
            # a compressor pair per socket would double its memory.
            assert driver_socket.protocol.extensions == []
            # The app's HTTP connection, kept alive between its pings (every ~4 s, later when the phone is busy).
            app = http.client.HTTPConnection(httpx.URL(url).netloc.decode(), timeout=10)
            assert _ping_over(app, driver) == 202
            with pytest.raises(TimeoutError):  # nothing to say for a while: the socket must simply stay open
                driver_socket.recv(timeout=QUIET_S)
            # uvicorn closed a connection idle for 5 s: a ping sent just then was reset, never answered, and the
            # app could not tell whether it was taken. The connection is kept open past any ping interval.
            assert _ping_over(app, driver) == 202
            app.close()

            merchant = {"Authorization": f"Token {_login(url, 'shop')}"}
            created = httpx.post(f"{url}/api/v1/deliveries", json=factories.delivery_payload(), headers=merchant)
            assert created.status_code == 201, created.text
            offer = json.loads(driver_socket.recv(timeout=10))
            assert offer["type"] == "offer.created"
            assert offer["data"]["delivery"]["id"] == created.json()["id"]

            take_zone_snapshots()  # as the beat task does, from another process than the server
            pressure = json.loads(ops_socket.recv(timeout=10))
            assert pressure["type"] == "zone.pressure"
            assert {zone["code"] for zone in pressure["data"]["zones"]} >= {"centro"}
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.mark.redis
def test_the_configured_channel_layer_passes_the_startup_check():
    """The installed redis-py / channels-redis pair, configured as settings do, reads longer than it blocks."""
    assert [error.id for error in run_checks() if error.id == "relay.E001"] == []


@pytest.mark.redis
@pytest.mark.parametrize(
    ("backend", "socket_timeout"),
    [
        ("channels_redis.core.RedisChannelLayer", 5),  # blocks 5 s in a pop
        ("channels_redis.pubsub.RedisPubSubChannelLayer", 0.05),  # polls for 0.1 s
    ],
)
def test_the_startup_check_refuses_a_layer_that_times_out_its_own_blocking_reads(settings, backend, socket_timeout):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": backend,
            "CONFIG": {"hosts": [{"address": settings.REDIS_URL, "socket_timeout": socket_timeout}]},
        }
    }
    channel_layers.backends.clear()
    try:
        assert "relay.E001" in [error.id for error in run_checks()]
    finally:
        channel_layers.backends.clear()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("workers", [1, 2])
def test_a_socket_message_far_larger_than_any_client_sends_closes_the_socket(zones, settings, tmp_path, workers):
    """Clients send a location or a resume (well under 1 KB). A tracking link is all it takes to open a socket, and
    each 16 MB message (uvicorn's default limit) held the server's event loop ~0.4 s: every socket and request of
    the process waited."""
    _create_accounts()
    with running_server(production_env(settings), tmp_path / "server.log", workers=workers) as url:
        merchant = {"Authorization": f"Token {_login(url, 'shop')}"}
        created = httpx.post(f"{url}/api/v1/deliveries", json=factories.delivery_payload(), headers=merchant)
        assert created.status_code == 201, created.text
        token = created.json()["tracking_url"].rsplit("/", 1)[1]
        with connect(f"{url.replace('http', 'ws', 1)}/ws/track/{token}/", max_size=None) as socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "status"
            socket.send(json.dumps({"type": "hello", "data": {"padding": "x" * 60_000}}))
            assert json.loads(socket.recv(timeout=10))["data"]["code"] == "unknown_type"  # answered, still open

            with pytest.raises(ConnectionClosed) as closed:
                # The server may close while the 2 MB are still being written: then the send raises.
                socket.send("[NaN" + ",1" * 1_000_000 + "]")
                socket.recv(timeout=10)
            # Message too big. The close frame can be lost to the TCP reset that the server's close sends while the
            # client is still writing (seen on a loaded machine): then the connection ended without one.
            assert closed.value.rcvd is None or closed.value.rcvd.code == 1009


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_socket_refused_while_redis_is_down_gets_a_503_and_logs_no_error(zones, settings, tmp_path):
    """A driver app reconnecting during a Redis outage is asked to come back later (503, Retry-After). uvicorn's
    websockets-sansio protocol logged every such refusal as "ASGI callable returned without completing
    handshake" at ERROR (Kludex/uvicorn#3138), though the answer went out whole."""
    redis_server = faults.PrivateRedis(tmp_path)
    redis_server.start()
    _create_accounts()
    log = tmp_path / "server.log"
    try:
        with running_server(production_env(settings) | {"REDIS_URL": redis_server.url}, log) as url:
            token = _login(url, "rider")
            redis_server.stop()
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{url.replace('http', 'ws', 1)}/ws/driver/?token={token}", open_timeout=10)
            assert refused.value.response.status_code == 503
            assert refused.value.response.headers["Retry-After"] == "5"
    finally:
        redis_server.stop()
    output = log.read_text()
    assert "channel layer unavailable" in output
    assert "ERROR" not in output and "Traceback" not in output


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_tracking_socket_over_its_addresss_budget_is_told_when_to_come_back(zones, settings, tmp_path):
    """Through uvicorn, the refusal is an HTTP 429 with Retry-After, as the page's and the JSON's are, not the
    bare 403 of a handshake closed before it was accepted. The server's log does not give the link away."""
    delivery = factories.new_delivery(factories.MerchantFactory())
    env = production_env(settings) | {"TRACK_THROTTLE_RATE": "2/min", "NUM_PROXIES": "1"}
    customer = {"X-Forwarded-For": f"2001:db8::{secrets.token_hex(2)}"}  # a budget of this test's own
    log = tmp_path / "server.log"
    with running_server(env, log) as url:
        socket_url = f"{url.replace('http', 'ws', 1)}/ws/track/{delivery.tracking_token}/"
        assert httpx.get(f"{url}/t/{delivery.tracking_token}", headers=customer).status_code == 200
        with connect(socket_url, additional_headers=customer) as socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "status"
        with pytest.raises(InvalidStatus) as refused:
            connect(socket_url, additional_headers=customer, open_timeout=10)
        assert refused.value.response.status_code == 429
        assert 1 <= int(refused.value.response.headers["Retry-After"]) <= 60
        assert httpx.get(f"{url}/t/{delivery.tracking_token}", headers=customer).status_code == 429
    output = log.read_text()
    assert "ERROR" not in output and "Traceback" not in output
    # Django logs every 4xx with its path: the link's token, its only credential, is not written.
    assert "Too Many Requests: /t/…" in output and delivery.tracking_token not in output
