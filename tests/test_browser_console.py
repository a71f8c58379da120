"""The ops console in a real headless Chromium (Debian's package, driven by Playwright): an ops user finds a
stuck delivery, reads why it was offered to whom, and forces it onto a named driver."""

import re

import pytest
from django.contrib.auth import get_user_model

from core.audit import Actor
from core.models import AuditEvent
from deliveries.services.offers import decline_offer
from tests import factories
from tests.browser import chromium

CHANGE_PAGE = re.compile(r"/admin/deliveries/delivery/[0-9a-f-]+/change/")
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_ops_read_the_timeline_and_force_a_delivery_onto_a_driver(zones, live_server, tmp_path):
    get_user_model().objects.create_superuser("olga", "olga@example.com", "ops-pass-123")
    declined_by = factories.online_driver(*factories.CENTRO, name="Ana Silva")
    chosen = factories.online_driver(38.73, -9.135, name="Bruno Costa")  # in Norte: not offered at level 0
    delivery = factories.new_delivery(factories.MerchantFactory(), external_id="stuck-1")
    decline_offer(delivery.offers.get().pk, actor=Actor.driver(declined_by), reason="too_far")

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "olga")
        page.fill("#id_password", "ops-pass-123")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.goto(f"{live_server.url}/admin/deliveries/delivery/?status__exact=pending")
        page.click("text=stuck-1")
        page.wait_for_url(CHANGE_PAGE)
        timeline = page.locator("body").inner_text()
        assert "offered to Ana Silva" in timeline
        assert "declined" in timeline
        page.screenshot(path=tmp_path / "delivery.png", full_page=True)

        page.click("text=Reassign…")
        page.select_option("select[name=driver]", label="Bruno Costa")
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
