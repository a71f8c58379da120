"""Sockets refuse whoever is not the stream's owner, on a real production server (issue 13): a driver's stream
is its own whatever the URL says, other roles and unknown driver or tracking tokens are refused, and a flood of
refused connects leaves the server's Redis connections where they were (nothing leaks per refusal).

RELAY_REFUSED_SOCKETS sets the flood (default 300, about 6 s on 2 cores: a leak of one connection per refusal
shows as hundreds; `make fault-drill` runs 3,000)."""

import json
import os
import subprocess

import pytest
from django.db import transaction
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from deliveries.services.availability import announce_state
from tests import factories
from tests.conftest import api_client_for
from tests.polling import eventually
from tests.servers import production_env, running_server

REFUSED = int(os.environ.get("RELAY_REFUSED_SOCKETS", "300"))
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _token(user) -> str:
    return api_client_for(user)._credentials["HTTP_AUTHORIZATION"].split()[1]


def _refused(url: str) -> bool:
    """True when the server refused the socket: at the handshake, or closed before any message."""
    try:
        with connect(url, open_timeout=10) as socket:
            socket.recv(timeout=5)
    except InvalidStatus:
        return True
    except Exception as exc:  # closed by the server before a single message: the consumer's refusal
        return type(exc).__name__.startswith("ConnectionClosed")
    return False


def _server_redis_connections(port: int) -> int:
    """Established TCP connections to Redis held by the server's processes (those listening on `port`)."""

    def ss(*filters: str) -> list[str]:
        return subprocess.run(["ss", "-Htnp", *filters], capture_output=True, text=True, check=True).stdout.splitlines()

    listening = " ".join(ss("-l", f"sport = :{port}"))
    pids = {chunk.split(",")[0] for chunk in listening.split("pid=")[1:]}
    return sum(1 for line in ss("dport = :6379") if any(f"pid={pid}," in line for pid in pids))


def test_streams_belong_to_their_driver_and_refusals_leak_nothing(zones, settings, tmp_path):
    driver_a = factories.online_driver(*factories.CENTRO)
    driver_b = factories.online_driver(*factories.CENTRO)
    merchant, ops_user = factories.MerchantFactory(), factories.OpsUserFactory()
    with running_server(production_env(settings), tmp_path / "server.log") as url:
        ws = url.replace("http", "ws", 1)
        port = int(url.rsplit(":", 1)[1])
        # B names A in every way a URL could: B's socket is still B's stream.
        naming_a = f"&driver={driver_a.pk}&driver_id={driver_a.pk}"
        with connect(f"{ws}/ws/driver/?token={_token(driver_b.user)}{naming_a}") as b:
            with transaction.atomic():
                announce_state(driver_a, reason="for-a")  # a message on A's stream
            with transaction.atomic():
                announce_state(driver_b, reason="for-b")
            heard = json.loads(b.recv(timeout=10))
            assert (heard["type"], heard["data"]["reason"]) == ("driver.state", "for-b")
            with pytest.raises(TimeoutError):
                b.recv(timeout=2)  # A's message never arrives
        for who in (merchant.user, ops_user):
            assert _refused(f"{ws}/ws/driver/?token={_token(who)}")
        assert _refused(f"{ws}/ws/driver/?token=not-a-token")
        assert _refused(f"{ws}/ws/driver/")
        assert _refused(f"{ws}/ws/track/not-a-tracking-token/")

        assert eventually(lambda: _server_redis_connections(port), timeout_s=10) is not None
        before = _server_redis_connections(port)
        guesses = [
            f"{ws}/ws/driver/?token=guess-{n:06d}" if n % 2 else f"{ws}/ws/track/guess-{n:06d}/" for n in range(REFUSED)
        ]
        refused = sum(_refused(guess) for guess in guesses)
        after = _server_redis_connections(port)

    assert refused == REFUSED
    assert after <= before + 2, (before, after)  # a pool may open one or two more under load, not one per refusal
