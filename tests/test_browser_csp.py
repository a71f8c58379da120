"""The Content-Security-Policy in a real headless Chromium (Debian's, via Playwright). It stops script that reaches a
page as markup, the defence behind escaping (a zone's name once ran as script on the console's maps). The pages
whose scripts do the most, the API docs and, on a production-mode server whose map tiles cannot be reached, the ops
board and the tracking page, work under it with no violation (every browser test fails on one: tests/browser.py)."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests import factories
from tests.browser import chromium
from tests.servers import free_port, production_env, running_server
from tests.test_browser_console import _logged_in
from tests.test_browser_ops_board import PASSWORD, _board_as_desk

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# What escaping once let through: an inline script and an event handler attribute.
INJECTED = (
    """<script>window.injected = "script"</script><img src="/static/relay/favicon.svg" onload="window.injected = 1">"""
)
BLOCKED = {"script-src-elem blocked inline on {path}", "script-src-attr blocked inline on {path}"}


def test_script_that_reaches_a_console_page_as_markup_does_not_run(zones, live_server):
    get_user_model().objects.create_superuser("olga", "olga@example.com", "ops-pass-123")
    path = f"/admin/zones/zone/{zones['centro'].pk}/change/"
    with chromium() as browser:
        page = _logged_in(browser, live_server, "olga")
        page.wait_for_url(f"{live_server.url}/admin/")

        def serve_with_markup(route, *, policy: bool):
            """The page as the server sent it, headers included, with the markup added to its body."""
            answer = route.fetch()
            headers = {
                name: value for name, value in answer.headers.items() if policy or name != "content-security-policy"
            }
            route.fulfill(response=answer, headers=headers, body=answer.text().replace("</body>", INJECTED + "</body>"))

        page.route(f"**{path}", lambda route: serve_with_markup(route, policy=False))
        page.goto(live_server.url + path)
        page.wait_for_function("window.injected !== undefined")
        assert page.evaluate("window.injected") in ("script", 1)  # without the policy, it runs

        page.unroute(f"**{path}")
        page.route(f"**{path}", lambda route: serve_with_markup(route, policy=True))
        page.goto(live_server.url + path)
        page.wait_for_selector("#zone-map path")  # the page's own scripts still draw the map
        page.wait_for_function("window.cspViolations === 2 || window.injected !== undefined")  # blocked, or ran
        assert page.evaluate("window.injected") is None
        assert set(browser.violations) == {blocked.format(path=path) for blocked in BLOCKED}
        browser.violations.clear()


def test_the_api_docs_work_under_the_policy(live_server):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{live_server.url}/api/docs/")
        page.wait_for_selector(".opblock")  # Swagger UI drew the operations, its settings from `?script`
        assert page.locator(".opblock").count() > 20

        page.goto(f"{live_server.url}/api/redoc/")
        page.wait_for_selector("[data-section-id^='tag/']")
        page.fill("input[placeholder='Search...']", "deliveries")  # the search index runs in its worker
        page.wait_for_selector("[data-role='search:results'] li")
        # Redoc's bundle fetches its footer logo from its vendor's CDN: the policy keeps the docs to this server.
        assert browser.violations == ["img-src blocked https://cdn.redoc.ly/redoc/logo-mini.svg on /api/redoc/"]
        browser.violations.clear()


@pytest.mark.postgres
@pytest.mark.redis
def test_the_ops_board_and_the_tracking_page_in_production_with_map_tiles_out_of_reach(zones, settings, tmp_path):
    """Tiles come from the tile server's origin, which the policy names; here nothing answers there (no internet),
    and the maps still draw their zones, markers and route on a blank background."""
    call_command("create_ops", "desk", "--password", PASSWORD, stdout=io.StringIO())
    delivery = factories.assigned_delivery(factories.MerchantFactory(), factories.online_driver(*factories.CENTRO))
    tiles = f"http://127.0.0.1:{free_port()}"  # another origin, where nothing listens
    env = production_env(settings) | {"RELAY_MAP_TILES_URL": tiles + "/{z}/{x}/{y}.png"}
    with running_server(env, tmp_path / "server.log") as url, chromium() as browser:
        failed = []
        board = _board_as_desk(browser, url)  # its socket connected
        board.context.on("requestfailed", lambda request: failed.append(request.url))
        board.reload()
        board.wait_for_selector("#board-status:text('connected')")
        board.wait_for_selector("#board-map path[data-zone='centro']")

        tracking = browser.new_page(viewport={"width": 360, "height": 780})
        tracking.on("requestfailed", lambda request: failed.append(request.url))
        tracking.goto(f"{url}/t/{delivery.tracking_token}")
        tracking.wait_for_selector("body[data-live=socket]")
        assert tracking.locator(".pickup-marker").count() == tracking.locator(".dropoff-marker").count() == 1
        tracking.wait_for_function("document.querySelectorAll('.leaflet-tile').length > 0")
        board.wait_for_function("document.querySelectorAll('.leaflet-tile').length > 0")
    assert failed and all(re.match(rf"^{tiles}/\d+/\d+/\d+\.png$", address) for address in failed), failed
