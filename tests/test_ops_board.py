"""The live ops board (issue 10): staff only, as the admin decides it; zones with their band and counts, open
escalations linked to their admin page; its socket `/ws/ops/` accepts the admin session as well as a token."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from deliveries.services import balancing
from deliveries.services.ladder import run_ladder
from tests import factories

BOARD = "/ops/board/"


def _board_data(response) -> dict:
    html = response.content.decode()
    start = html.index('<script id="board-data" type="application/json">') + len(
        '<script id="board-data" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


@pytest.mark.django_db
def test_ops_see_every_zone_with_its_band_and_the_open_escalations(client, merchant, clock):
    delivery = factories.new_delivery(merchant, "stuck-1")  # nobody online: escalated at once
    clock.shift(600)
    run_ladder()
    client.force_login(factories.OpsUserFactory())
    response = client.get(BOARD)
    assert response.status_code == 200
    board = _board_data(response)
    zones = {zone["code"]: zone for zone in board["zones"]}
    assert set(zones) == {"centro", "norte", "este"}
    assert (zones["centro"]["band"], zones["centro"]["open_deliveries"], zones["centro"]["surge_multiplier"]) == (
        "critical",
        1,
        "1.50",
    )
    assert zones["centro"]["polygon"]["type"] == "Polygon"
    (escalation,) = board["escalations"]
    assert (escalation["external_id"], escalation["level"]) == ("stuck-1", 3)
    html = response.content.decode()
    assert "/admin/deliveries/escalation/0/change/" in html  # each escalation links its admin page
    assert "vendor/leaflet/leaflet.js" in html and "cdn" not in html.lower()
    assert delivery.zone.code == "centro"


@pytest.mark.django_db
def test_the_admin_header_links_the_board_for_ops(client, zones):
    client.force_login(factories.OpsUserFactory())
    assert f'href="{BOARD}"' in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_the_board_is_for_staff_only(client, zones):
    assert client.get(BOARD)["Location"] == f"/admin/login/?next={BOARD}"
    client.force_login(factories.UserFactory())  # a merchant's or driver's account, not staff
    assert client.get(BOARD)["Location"] == f"/admin/login/?next={BOARD}"
    client.force_login(factories.UserFactory(is_staff=True))  # staff, but may not watch the escalation queue
    assert client.get(BOARD).status_code == 403


@pytest.mark.django_db(transaction=True)
async def test_the_ops_socket_accepts_the_admin_session(zones):
    browser = Client()
    await database_sync_to_async(browser.force_login)(await database_sync_to_async(factories.OpsUserFactory)())
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(application, "/ws/ops/", headers=[(b"cookie", cookie)])
    connected, _ = await socket.connect()
    assert connected
    await database_sync_to_async(balancing.take_zone_snapshots)()
    message = await socket.receive_json_from(timeout=3)
    assert message["type"] == "zone.pressure"
    assert {zone["code"] for zone in message["data"]["zones"]} == {"centro", "norte", "este"}
    await socket.disconnect()

    nobody = WebsocketCommunicator(application, "/ws/ops/", headers=[(b"cookie", b"sessionid=made-up")])
    assert await nobody.connect() == (False, 4403)
