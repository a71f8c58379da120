"""The KPI dashboard in a real headless Chromium (Debian's, via Playwright) on a seeded history: an ops user
opens it from the console and sees charts drawn with data, offline (nothing is fetched from elsewhere)."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.test_browser_console import chromium

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_ops_open_the_dashboard_on_seeded_history_and_see_charts(zones, live_server):
    out = io.StringIO()
    call_command("seed_history", "--days", "3", "--per-day", "12", "--drivers-per-zone", "1", stdout=out)
    assert "day 3/3" in out.getvalue()
    call_command("create_ops", "olga", password="ops-pass-123", stdout=io.StringIO())
    ARTIFACTS.mkdir(exist_ok=True)
    outside = []

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.on("request", lambda request: outside.append(request.url) if live_server.url not in request.url else None)
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "olga")
        page.fill("#id_password", "ops-pass-123")
        page.click("input[type=submit]")
        page.wait_for_url(f"{live_server.url}/admin/")
        page.click("text=KPI dashboard")
        page.wait_for_selector("svg.chart")
        charts = page.locator("svg.chart")
        assert charts.count() == 8
        drawn = page.eval_on_selector_all(
            "svg.chart",
            """charts => charts.map(chart => ({
                title: chart.getAttribute('aria-label'),
                points: Number(chart.dataset.points),
                marks: chart.querySelectorAll('polyline, rect').length,
                width: chart.getBoundingClientRect().width,
            }))""",
        )
        by_title = {chart["title"]: chart for chart in drawn}
        for title in (
            "Deliveries per day",
            "Time to assign (s)",
            "Acceptance rate (%)",
            "Cost and margin per delivery",
        ):
            assert by_title[title]["points"] > 0 and by_title[title]["marks"] > 0 and by_title[title]["width"] > 100
        assert by_title["Deliveries by zone"]["marks"] == 3
        assert page.locator("#drivers-table tbody tr").count() == 3
        # Every column of each table in sight at 1300 px: the zones table ran 76 px past the page's right edge.
        widths = page.evaluate(
            """() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,
                ...['#zones-table', '#drivers-table'].map(
                    table => document.querySelector(table).getBoundingClientRect().right)]"""
        )
        assert widths[0] == widths[1] and max(widths[2:]) <= widths[1], widths
        # Every label inside its chart: the last day's ran past the right edge, cut to "11-2".
        cut = page.eval_on_selector_all(
            "svg.chart",
            """charts => charts.flatMap(chart => {
                const box = chart.getBoundingClientRect();
                return [...chart.querySelectorAll('text')].filter(text => {
                    const own = text.getBoundingClientRect();
                    return own.left < box.left || own.right > box.right;
                }).map(text => text.textContent);
            })""",
        )
        assert cut == []
        page.screenshot(path=ARTIFACTS / "kpi-dashboard.png", full_page=True)

        page.select_option("select[name=zone]", "norte")
        page.click("input[type=submit][value=Show]")
        page.wait_for_url("**zone=norte**")
        assert page.locator("#zones-table tbody tr").count() == 1
        page.screenshot(path=ARTIFACTS / "kpi-dashboard-norte.png", full_page=True)
        with page.expect_download() as download:
            page.click("#drivers-table >> xpath=preceding::a[contains(@class,'csv')][1]")
        saved = ARTIFACTS / "drivers.csv"
        download.value.save_as(saved)
        page.close()

    assert saved.read_text().splitlines()[0].startswith("table,driver_id,name,zone,offers_received")
    assert outside == []  # the charts need nothing from the internet
