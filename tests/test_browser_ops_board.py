"""The live ops board in a real headless Chromium (Debian's package, driven by Playwright) against a real
`manage.py serve` (production mode: PostgreSQL, Redis channel layer): an ops user logs in, opens the board, a
merchant creates demand in a zone with nobody available, and at the minute's snapshot the zone turns critical on
the map and in the table without a reload; an escalation appears in the queue as it opens. Someone who is not
staff is sent to the login page. The zone admin page draws the zone and its neighbours. Screenshots go to
test-artifacts/ (gitignored)."""

import io
import threading
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from core.audit import Actor
from deliveries.models import EscalationLevel
from deliveries.services.escalations import resolve_escalation
from deliveries.tasks import take_zone_snapshots
from drivers import locations
from tests import factories
from tests.servers import ROOT, production_env, running_server
from tests.test_admin_queue import escalated
from tests.test_browser_console import chromium

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ARTIFACTS = ROOT / "test-artifacts"
PASSWORD = "secret-pass-123"
CRITICAL_RED = "#c62828"  # RelayZoneMap.COLOURS.critical


def in_thread(function, *args):
    """Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls: make them from
    another thread (its own connection; the test commits, so the server sees the rows)."""
    result = {}

    def run():
        try:
            result["value"] = function(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result.get("value")


def _session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _zone_band(page, code: str) -> tuple[str, str]:
    row = page.locator(f'#zone-table tr[data-zone="{code}"]')
    return row.get_attribute("data-band"), page.locator(f'path[data-zone="{code}"]').get_attribute("fill")


def _board_as_desk(browser, url: str):
    """The ops board, as ops user `desk` logged in through the console's form, its socket connected."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/admin/login/?next=/ops/board/")
    page.fill("#id_username", "desk")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/ops/board/")
    page.wait_for_selector("#board-status:text('connected')")
    return page


def test_ops_watch_a_zone_turn_critical_live_and_others_are_sent_to_login(zones, settings):
    ARTIFACTS.mkdir(exist_ok=True)
    out = io.StringIO()
    call_command("create_ops", "desk", "--password", PASSWORD, stdout=out)
    call_command("create_merchant", "shop", "--password", PASSWORD, stdout=out)
    factories.online_driver(*factories.NORTE)  # Norte has a driver; Centro has nobody available
    locations.flush_positions()
    outsider = factories.UserFactory()
    log = Path(ARTIFACTS / "ops_board_server.log")

    with running_server(production_env(settings), log) as url, chromium() as browser:
        page = _board_as_desk(browser, url)
        assert page.locator("#board-updated").inner_text().startswith("zones at ")  # not a dangling "·"
        assert _zone_band(page, "centro")[0] == "normal"
        page.evaluate("window.sameDocument = true")
        page.screenshot(path=ARTIFACTS / "ops_board_before.png", full_page=True)

        token = httpx.post(f"{url}/api/v1/auth/token", json={"username": "shop", "password": PASSWORD}).json()["token"]
        created = httpx.post(
            f"{url}/api/v1/deliveries",
            json=factories.delivery_payload("rush-1"),
            headers={"Authorization": f"Token {token}"},
        )
        assert created.status_code == 201, created.text
        in_thread(take_zone_snapshots)  # the minute's beat task, from another process than the server

        page.wait_for_selector('#zone-table tr[data-zone="centro"][data-band="critical"]', timeout=10_000)
        assert _zone_band(page, "centro") == ("critical", CRITICAL_RED)
        assert _zone_band(page, "norte")[0] == "normal"
        assert "×1.50" in page.locator('#zone-table tr[data-zone="centro"]').inner_text()
        assert page.evaluate("window.sameDocument") is True  # changed in place: no reload

        # Norte's driver has Centro's first delivery on offer: a second one finds nobody and escalates at once.
        second = httpx.post(
            f"{url}/api/v1/deliveries",
            json=factories.delivery_payload("rush-2"),
            headers={"Authorization": f"Token {token}"},
        )
        assert second.status_code == 201, second.text
        escalation = page.wait_for_selector("#escalation-table tr[data-escalation]", timeout=10_000)
        assert "rush-2" in escalation.inner_text() and "L2" in escalation.inner_text()
        link = page.locator("#escalation-table a", has_text="rush-2").get_attribute("href")
        assert link == f"/admin/deliveries/escalation/{escalation.get_attribute('data-escalation')}/change/"
        assert page.evaluate("window.sameDocument") is True
        page.screenshot(path=ARTIFACTS / "ops_board_critical.png", full_page=True)

        page.goto(f"{url}/admin/zones/zone/{zones['centro'].pk}/change/")
        page.wait_for_selector("#zone-map path")
        assert page.locator("#zone-map path").count() == 3  # Centro, and its neighbours Norte and Este
        page.screenshot(path=ARTIFACTS / "zone_admin_map.png", full_page=True)

        anonymous = browser.new_page()
        anonymous.goto(f"{url}/ops/board/")
        assert anonymous.url == f"{url}/admin/login/?next=/ops/board/"
        not_staff = browser.new_context()
        not_staff.add_cookies([{"name": "sessionid", "value": in_thread(_session_of, outsider), "url": url}])
        visitor = not_staff.new_page()
        visitor.goto(f"{url}/ops/board/")
        assert visitor.url == f"{url}/admin/login/?next=/ops/board/"
        assert "not authorized to access this page" in visitor.locator("body").inner_text()
        visitor.screenshot(path=ARTIFACTS / "ops_board_not_staff.png", full_page=True)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_a_zone_name_holding_markup_is_shown_as_text_on_every_map(zones, settings):
    """Zone names are typed by ops (the admin, `load_zones`); the maps' labels once put them in as HTML, so a name
    ran as script in the console of everyone who opened the board or a zone's page, superusers included."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = '<img src=x onerror="window.injected=1">Norte'
    zones["norte"].name = name
    zones["norte"].save(update_fields=["name"])
    call_command("create_ops", "desk", "--password", PASSWORD, stdout=io.StringIO())
    log = Path(ARTIFACTS / "zone_name_markup_server.log")

    with running_server(production_env(settings), log) as url, chromium() as browser:
        page = _board_as_desk(browser, url)
        assert f"{name} · normal ×1.00" in page.locator("#board-map .zone-label").all_inner_texts()
        assert page.evaluate("window.injected") is None
        page.goto(f"{url}/admin/zones/zone/{zones['centro'].pk}/change/")
        page.wait_for_selector("#zone-map .zone-label")
        assert name in page.locator("#zone-map .zone-label").all_inner_texts()
        assert page.evaluate("window.injected") is None
        assert page.locator("img[src=x]").count() == 0


def test_a_zones_escalation_count_follows_the_queue_when_one_is_resolved(zones, settings):
    """The zone table counted open escalations from the minute's reading while the queue beside it was live: one
    just resolved left the queue at once but stayed counted against its zone until the next snapshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    call_command("create_ops", "desk", "--password", PASSWORD, stdout=io.StringIO())
    escalation = escalated(factories.MerchantFactory(), "stuck-9", level=EscalationLevel.ALERT)
    resolver = factories.OpsUserFactory()
    log = Path(ARTIFACTS / "ops_board_resolved_server.log")

    with running_server(production_env(settings), log) as url, chromium() as browser:
        page = _board_as_desk(browser, url)
        count = page.locator('#zone-table tr[data-zone="centro"] td:last-child')  # Escalations
        assert count.inner_text() == "1"
        in_thread(lambda: resolve_escalation(escalation.pk, actor=Actor.ops(resolver), note="sent a car"))
        page.wait_for_selector("#no-escalations:not([hidden])", timeout=10_000)
        assert count.inner_text() == "0"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
