"""The ops console in a real headless Chromium (Debian's package, driven by Playwright): an ops user finds a
stuck delivery, reads why it was offered to whom, and forces it onto a named driver."""

import re
import zoneinfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import dateformat, timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import EscalationLevel
from deliveries.services.offers import decline_offer
from tests import factories
from tests.browser import chromium
from tests.test_admin_queue import escalated

CHANGE_PAGE = re.compile(r"/admin/deliveries/delivery/[0-9a-f-]+/change/")
ESCALATION_PAGE = re.compile(r"/admin/deliveries/escalation/[0-9a-f-]+/change/")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _logged_in(browser, live_server, username: str, *, then: str = "", **context):
    """A page of the console, logged in through its form as `username` (password ops-pass-123); `context`: the
    browser context's options (its `timezone_id`, ...)."""
    page = browser.new_page(viewport={"width": 1300, "height": 1000}, **context)
    page.goto(f"{live_server.url}/admin/login/" + (f"?next={then}" if then else ""))
    page.fill("#id_username", username)
    page.fill("#id_password", "ops-pass-123")
    page.click("input[type=submit]")
    return page


def test_ops_read_the_timeline_and_force_a_delivery_onto_a_driver(zones, live_server, tmp_path):
    get_user_model().objects.create_superuser("olga", "olga@example.com", "ops-pass-123")
    declined_by = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    chosen = factories.online_driver(38.73, -9.135, name="Bruno Costa")  # in Norte: not offered at level 0
    delivery = factories.new_delivery(factories.MerchantFactory(), external_id="stuck-1")
    decline_offer(delivery.offers.get().pk, actor=Actor.driver(declined_by), reason="too_far")

    with chromium() as browser:
        page = _logged_in(browser, live_server, "olga")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.goto(f"{live_server.url}/admin/deliveries/delivery/?status__exact=pending")
        page.click("text=stuck-1")
        page.wait_for_url(CHANGE_PAGE)
        timeline = page.locator("body").inner_text()
        assert "offered to Ana Silva" in timeline
        assert "declined" in timeline
        page.screenshot(path=tmp_path / "delivery.png", full_page=True)

        page.click("text=Reassign…")
        page.select_option("select[name=driver]", label="Bruno Costa (available)")  # each with their state
        page.check("input[name=force]")
        page.click("input[type=submit][value=Reassign]")
        page.wait_for_url(CHANGE_PAGE)
        assert "assigned" in page.locator("body").inner_text()
        page.screenshot(path=tmp_path / "after.png", full_page=True)
        page.close()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("assigned", chosen)
    assert delivery.offers.get(driver=chosen).kind == "forced"
    assigned = AuditEvent.objects.get(delivery_id=delivery.pk, type="delivery.assigned")
    assert (assigned.actor_kind, assigned.payload["how"]) == ("ops", "forced")


def test_ops_acknowledge_and_resolve_an_escalation_from_the_page_the_board_links_to(zones, live_server):
    factories.OpsUserFactory(username="oscar", password=make_password("ops-pass-123"))  # the ops group, no superuser
    escalation = escalated(factories.MerchantFactory(), "stuck-2", level=EscalationLevel.ALERT)

    with chromium() as browser:
        page = _logged_in(browser, live_server, "oscar", then="/ops/board/")
        page.click("#escalation-table >> text=stuck-2")
        page.wait_for_url(ESCALATION_PAGE)
        page.click(".object-tools input[value=Acknowledge]")
        assert "Acknowledged: 1 of 1." in page.locator("ul.messagelist").inner_text()

        page.goto(f"{live_server.url}/ops/board/")
        page.click("#escalation-table >> text=stuck-2")
        page.wait_for_url(ESCALATION_PAGE)
        assert page.locator(".object-tools input[value=Acknowledge]").count() == 0  # done already
        page.click('.object-tools input[value="Resolve…"]')
        page.fill("textarea[name=note]", "called the shop, driver on the way")
        page.click("input[type=submit][value=Resolve]")
        assert "Resolved: 1 of 1." in page.locator("ul.messagelist").inner_text()
        page.goto(page.url.split("/admin/")[0] + f"/admin/deliveries/escalation/{escalation.pk}/change/")
        assert page.locator(".object-tools input[type=submit]").count() == 0  # nothing left to do
        page.close()

    escalation.refresh_from_db()
    assert (escalation.status, escalation.acknowledged_by.username) == ("resolved", "oscar")
    assert escalation.resolution_note == "called the shop, driver on the way"


def test_the_board_fits_a_phone_and_its_tables_scroll_in_their_column(zones, live_server):
    """On a phone's width the board's tables pushed the page sideways: the header ended at the screen's edge, the
    zones' escalation counts and the queue's statuses were off it, reached only by scrolling the whole page."""
    factories.OpsUserFactory(username="oscar", password=make_password("ops-pass-123"))
    escalated(factories.MerchantFactory(), "stuck-3", level=EscalationLevel.ALERT)

    with chromium() as browser:
        page = _logged_in(browser, live_server, "oscar", then="/ops/board/")
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_selector("#escalation-table >> text=stuck-3")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        side = page.locator(".board-side")
        assert side.bounding_box()["width"] <= 390
        assert side.evaluate("side => side.scrollWidth > side.clientWidth")  # the tables scroll inside it
        page.close()


def test_a_fresh_login_lands_on_pages_in_the_browsers_time_zone(zones, live_server):
    """The login page names the browser's zone to the server (a cookie), so the first page after it already shows
    times as the ops user's clock does, and says in which zone."""
    get_user_model().objects.create_superuser("olga", "olga@example.com", "ops-pass-123")
    delivery = factories.new_delivery(factories.MerchantFactory(), external_id="soup")
    created = dateformat.format(
        timezone.localtime(delivery.created_at, zoneinfo.ZoneInfo("America/Los_Angeles")), "N j, Y, P"
    )

    with chromium() as browser:
        page = _logged_in(browser, live_server, "olga", timezone_id="America/Los_Angeles")
        page.wait_for_url(f"{live_server.url}/admin/")
        assert page.locator("#time-zone").inner_text() == "Times in America/Los_Angeles"
        page.goto(f"{live_server.url}/admin/deliveries/delivery/{delivery.pk}/change/")
        assert page.locator(".field-created_at .readonly").inner_text() == created
        page.close()
