"""`/ws/track/<token>/` in production mode: a real `manage.py serve` on the Redis channel layer and PostgreSQL.
A customer's socket gets the state on connect, stays quiet while the driver rides to the pickup (their pings
make no `location` before pickup), then hears `status` at pickup and `location` as the driver moves, whichever
way the pings arrive (the ASGI ingest route, the driver socket). Another delivery's socket hears none of it."""

import json
from datetime import UTC, datetime

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests import factories
from tests.polling import eventually
from tests.servers import production_env, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
QUIET_S = 10
ENVELOPE = {"type", "id", "seq", "sent_at", "data"}


def _point(lat: float, lng: float) -> dict:
    return {"lat": lat, "lng": lng, "recorded_at": datetime.now(UTC).isoformat()}


def _message(socket, timeout: float = 10) -> dict:
    message = json.loads(socket.recv(timeout=timeout))
    assert set(message) == ENVELOPE, message
    return message


def test_the_tracking_socket_is_quiet_before_pickup_then_hears_status_and_location(zones, settings, tmp_path):
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    merchant = factories.MerchantFactory()
    delivery = factories.assigned_delivery(merchant, rider)
    waiting = factories.new_delivery(merchant, "order-2")  # nobody else free: it waits
    log = tmp_path / "server.log"
    with running_server(production_env(settings), log) as url:
        login = httpx.post(
            f"{url}/api/v1/auth/token", json={"username": rider.user.username, "password": "secret-pass-123"}
        )
        token = login.json()["token"]
        driver = {"Authorization": f"Token {token}"}
        ws_url = url.replace("http", "ws", 1)

        with pytest.raises(InvalidStatus):
            connect(f"{ws_url}/ws/track/not-a-real-token/").close()

        with (
            connect(f"{ws_url}/ws/track/{delivery.tracking_token}/") as customer,
            connect(f"{ws_url}/ws/track/{waiting.tracking_token}/") as other_customer,
            connect(f"{ws_url}/ws/driver/?token={token}") as driver_socket,
        ):
            first = _message(customer)
            assert (first["type"], first["seq"], first["data"]["status"]) == ("status", 1, "assigned")
            assert "location" not in first["data"]
            assert _message(other_customer)["data"]["status"] == "pending"

            # Riding to the pickup for QUIET_S: pings arrive, the customer hears nothing.
            for step in range(QUIET_S // 2):
                ping = {"points": [_point(factories.CENTRO[0] + step * 1e-4, factories.CENTRO[1])]}
                assert httpx.post(f"{url}/api/v1/driver/locations", json=ping, headers=driver).status_code == 202
                with pytest.raises(TimeoutError):
                    customer.recv(timeout=2)

            assert httpx.post(f"{url}/api/v1/deliveries/{delivery.pk}/pickup", headers=driver).status_code == 200
            picked = _message(customer)
            assert (picked["type"], picked["seq"], picked["data"]["status"]) == ("status", 2, "picked_up")

            ping = {"points": [_point(38.7171, -9.1355)]}
            assert httpx.post(f"{url}/api/v1/driver/locations", json=ping, headers=driver).status_code == 202
            moved = _message(customer)
            assert (moved["type"], moved["seq"]) == ("location", 3)
            assert (moved["data"]["lat"], moved["data"]["lng"]) == (38.7171, -9.1355)

            # The driver socket's pings are followed too (after the 2 s budget of the delivery renews).
            def heard_from_the_driver_socket():
                driver_socket.send(json.dumps({"type": "location", "data": _point(38.7182, -9.1344)}))
                try:
                    message = _message(customer, timeout=1)
                except TimeoutError:
                    return None
                return message if message["data"].get("lat") == 38.7182 else None

            assert eventually(heard_from_the_driver_socket, timeout_s=10, interval_s=0)

            with pytest.raises(TimeoutError):  # not a word of another delivery
                other_customer.recv(timeout=1)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
