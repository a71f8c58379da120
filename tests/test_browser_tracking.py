"""The customer's tracking page in a real headless Chromium (Debian's, driven by Playwright) against a real
production-mode server: status and ETA window at first sight, the driver's marker moving after pickup without a
reload, the outcome and no marker after delivery, and not one request outside the server. Screenshots at 360 and
1280 px wide are kept in test-artifacts/ (git-ignored)."""

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from deliveries.models import Delivery
from tests import factories
from tests.browser import chromium
from tests.polling import eventually
from tests.servers import ROOT, production_env, running_server

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ARTIFACTS = ROOT / "test-artifacts"
WINDOW = re.compile(r"^Arrives \d\d:\d\d–\d\d:\d\d$")


def _ping(url: str, driver: dict, lat: float, lng: float) -> None:
    point = {"lat": lat, "lng": lng, "recorded_at": datetime.now(UTC).isoformat()}
    assert httpx.post(f"{url}/api/v1/driver/locations", json={"points": [point]}, headers=driver).status_code == 202


def test_a_customer_follows_a_delivery_to_the_door(zones, settings, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    delivery = factories.assigned_delivery(factories.MerchantFactory(name="Pizza Place"), rider)
    login = {"username": rider.user.username, "password": factories.PASSWORD}
    log = tmp_path / "server.log"
    with running_server(production_env(settings), log) as url, chromium() as browser:
        driver = {"Authorization": f"Token {httpx.post(f'{url}/api/v1/auth/token', json=login).json()['token']}"}
        page = browser.new_page(viewport={"width": 360, "height": 780}, locale="en-GB")
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("websocket", lambda socket: requested.append(socket.url))

        page.goto(f"{url}/t/{delivery.tracking_token}")
        assert page.locator("#status").inner_text() == "Your driver is on the way to the store"
        assert WINDOW.match(page.locator("#eta").inner_text()), page.locator("#eta").inner_text()
        assert page.locator("#driver").inner_text() == "Rita · bicycle"
        assert page.locator(".pickup-marker").count() == page.locator(".dropoff-marker").count() == 1
        # A phone has no hover for the markers' tooltips: the legend under the map says what each dot is.
        legend = page.locator(".legend li:visible")
        assert legend.all_inner_texts() == ["Store", "You"]
        page.wait_for_selector("body[data-live=socket]")
        page.evaluate("window.sameDocument = true")
        page.screenshot(path=ARTIFACTS / "tracking-360.png", full_page=True)

        assert httpx.post(f"{url}/api/v1/deliveries/{delivery.pk}/pickup", headers=driver).status_code == 200
        page.wait_for_selector("body[data-status=picked_up]")
        assert page.locator("#status").inner_text() == "On the way to you"
        assert WINDOW.match(page.locator("#eta").inner_text())
        # The status and the ETA are a live region: a screen reader announces each change as it arrives.
        announced = page.get_by_role("status").inner_text().split("\n")
        assert announced[0] == "On the way to you" and WINDOW.match(announced[-1]), announced

        _ping(url, driver, 38.7160, -9.1380)
        marker = page.wait_for_selector(".driver-marker")
        before = marker.bounding_box()
        assert legend.all_inner_texts() == ["Store", "You", "Driver"]

        def marker_moved():
            _ping(url, driver, 38.7190, -9.1330)  # the server pushes at most every 2 s per delivery
            page.wait_for_timeout(500)
            return page.locator(".driver-marker").bounding_box() != before

        assert eventually(marker_moved, timeout_s=15, interval_s=0)
        assert page.evaluate("window.sameDocument") is True  # moved live, not by a reload
        page.set_viewport_size({"width": 1280, "height": 860})
        page.screenshot(path=ARTIFACTS / "tracking-1280.png", full_page=True)

        assert httpx.post(f"{url}/api/v1/deliveries/{delivery.pk}/deliver", headers=driver).status_code == 200
        page.wait_for_selector("body[data-status=delivered]")
        assert page.locator(".driver-marker").count() == 0
        assert legend.all_inner_texts() == ["Store", "You"]
        assert page.locator("#status").inner_text() == "Delivered"
        outcome = page.locator("#eta").inner_text()
        page.screenshot(path=ARTIFACTS / "tracking-delivered-360.png", full_page=True)
        page.close()

    # (The ORM waits until Playwright's event loop is closed.)
    finished = Delivery.objects.get(pk=delivery.pk).finished_at.astimezone(ZoneInfo(zones["centro"].time_zone))
    assert outcome == f"Delivered at {finished:%H:%M}"
    outside = [
        address
        for address in requested
        if not re.match(rf"^(http|ws)://127\.0\.0\.1:{url.rsplit(':', 1)[1]}/", address)
    ]
    assert requested and outside == []
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.mark.django_db(transaction=True)
def test_without_its_socket_the_page_polls_the_json_every_ten_seconds(zones, live_server):
    """Django's test server speaks no websocket: the page falls back to polling, on the page's own clock."""
    rider = factories.online_driver(*factories.CENTRO, name="Rita Rodrigues")
    delivery = factories.assigned_delivery(factories.MerchantFactory(), rider)
    login = {"username": rider.user.username, "password": factories.PASSWORD}
    url = live_server.url
    with chromium() as browser:
        driver = {"Authorization": f"Token {httpx.post(f'{url}/api/v1/auth/token', json=login).json()['token']}"}
        page = browser.new_page(viewport={"width": 360, "height": 780})
        polls = []
        page.on("request", lambda request: polls.append(request.url) if "/api/v1/track/" in request.url else None)
        page.clock.install()
        with page.expect_response(lambda answer: "/api/v1/track/" in answer.url):  # the socket failed: a poll
            page.goto(f"{url}/t/{delivery.tracking_token}")
        assert page.locator("body").get_attribute("data-live") is None  # no socket
        page.evaluate("window.sameDocument = true")

        assert httpx.post(f"{url}/api/v1/deliveries/{delivery.pk}/pickup", headers=driver).status_code == 200
        _ping(url, driver, 38.7160, -9.1380)
        page.clock.run_for(9_000)
        assert page.locator("body").get_attribute("data-status") == "assigned"  # not yet: every 10 s
        with page.expect_response(lambda answer: "/api/v1/track/" in answer.url):
            page.clock.run_for(1_500)
        page.wait_for_selector("body[data-status=picked_up]")
        page.wait_for_selector(".driver-marker")
        assert page.locator("#status").inner_text() == "On the way to you"
        assert page.evaluate("window.sameDocument") is True
        assert len(polls) == 2
        page.close()


def test_a_notice_reads_top_to_bottom_on_a_wide_screen(zones, live_server):
    """From 900 px the tracking page puts its map beside the details, and a notice, having no map, got the same
    two columns: "Unknown tracking link" on the left, what to do about it far off on the right."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        assert page.goto(f"{live_server.url}/t/no-such-link").status == 404
        heading, text = (page.locator(selector).bounding_box() for selector in ("h1", "main p"))
        assert heading["y"] + heading["height"] <= text["y"]
        assert abs((heading["x"] + heading["width"] / 2) - (text["x"] + text["width"] / 2)) < 2  # both centred
        page.close()
