"""Scale-out: two production-mode servers ("two machines") sharing one PostgreSQL and one Redis behave as one
Relay. A driver's socket on one server hears what a request to the other one caused."""

import io
import json
from datetime import UTC, datetime

import httpx
import pytest
from django.core.management import call_command
from websockets.sync.client import connect

from tests import factories
from tests.servers import production_env, running_server

PASSWORD = "secret-pass-123"


def _login(url: str, username: str) -> dict:
    answer = httpx.post(f"{url}/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Token {answer.json()['token']}"}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_driver_on_server_a_gets_and_accepts_an_offer_made_through_server_b(zones, settings, tmp_path):
    call_command("create_merchant", "shop", "--password", PASSWORD, stdout=io.StringIO())
    call_command("create_driver", "rider", "--password", PASSWORD, "--zone", "centro", stdout=io.StringIO())
    env = production_env(settings)
    with (
        running_server(env, tmp_path / "a.log") as server_a,
        running_server(env, tmp_path / "b.log") as server_b,
    ):
        driver_on_a, driver_on_b = _login(server_a, "rider"), _login(server_b, "rider")
        online = httpx.post(f"{server_a}/api/v1/driver/availability", json={"state": "available"}, headers=driver_on_a)
        assert online.status_code == 200, online.text
        point = {"lat": factories.CENTRO[0], "lng": factories.CENTRO[1], "recorded_at": datetime.now(UTC).isoformat()}
        pinged = httpx.post(f"{server_a}/api/v1/driver/locations", json={"points": [point]}, headers=driver_on_a)
        assert pinged.status_code == 202

        token = driver_on_a["Authorization"].split()[1]
        with connect(f"{server_a.replace('http', 'ws', 1)}/ws/driver/?token={token}") as driver_socket:
            created = httpx.post(
                f"{server_b}/api/v1/deliveries", json=factories.delivery_payload(), headers=_login(server_b, "shop")
            )
            assert created.status_code == 201, created.text
            offer = json.loads(driver_socket.recv(timeout=10))
            assert offer["type"] == "offer.created"

            accepted = httpx.post(f"{server_b}/api/v1/offers/{offer['data']['id']}/accept", headers=driver_on_b)
            assert accepted.status_code == 200, accepted.text
            assigned = json.loads(driver_socket.recv(timeout=10))
            assert assigned["type"] == "delivery.assigned"
            assert assigned["data"]["id"] == created.json()["id"]

        seen_on_a = httpx.get(f"{server_a}/api/v1/deliveries/{created.json()['id']}", headers=_login(server_a, "shop"))
        assert seen_on_a.json()["status"] == "assigned"
    for log in ("a.log", "b.log"):
        assert "Traceback" not in (tmp_path / log).read_text()
