"""The KPI dashboard in the ops console: staff only, charts drawn on the server, filters, CSV downloads."""

import csv
import io
import re
from datetime import date

import pytest

from analytics.api import kpi_rows
from analytics.kpis import kpi_report

pytestmark = pytest.mark.django_db
DASHBOARD = "/admin/analytics/zoneday/dashboard/"


def test_ops_see_charts_and_tables_and_download_each_table(client, ops_user, merchant, clock):
    from tests import factories

    factories.new_delivery(merchant, "x1")  # nobody online: waits
    client.force_login(ops_user)
    page = client.get(DASHBOARD, {"from": "2026-11-20", "to": "2026-11-25"})
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('<svg class="chart"') == 8
    assert 'data-kind="bar" data-points="3"' in html  # three zones
    assert "KPI dashboard" in client.get("/admin/").content.decode()  # linked from every console page
    download = client.get(DASHBOARD, {"from": "2026-11-20", "to": "2026-11-25", "download": "zones"})
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    expected = kpi_rows(kpi_report(date(2026, 11, 20), date(2026, 11, 25)), ("zones",))
    assert [row["zone"] for row in rows] == [row["zone"] for row in expected] == ["centro", "este", "norte"]
    assert rows[0]["deliveries"] == "1"


def test_a_zone_filter_and_bad_dates_are_shown_not_crashed(client, ops_user, zones, clock):
    client.force_login(ops_user)
    page = client.get(DASHBOARD, {"from": "2026-11-25", "to": "2026-11-20"}).content.decode()
    assert "Must be on or after" in page
    one_zone = client.get(DASHBOARD, {"zone": "norte"}).content.decode()
    assert 'data-kind="bar" data-points="1"' in one_zone


@pytest.mark.parametrize(
    ("typed", "field", "words"),
    [
        ({"from": "2026-11-25", "to": "2026-11-20"}, "to", "Must be on or after"),
        ({"from": "2026-13-45", "to": "2026-11-20"}, "from", "wrong format"),
        ({"from": "2024-01-01", "to": "2026-11-20"}, "to", "at most 366 days"),
    ],
)
def test_a_wrong_date_stays_as_typed_with_what_is_wrong_beside_it(client, ops_user, zones, clock, typed, field, words):
    """A wrong date put the inputs back to the last 14 days, said what was wrong above the form, and showed the
    figures of those 14 days under it: the ops staffer retyped the dates without seeing which one was wrong, or
    read the default range's figures as the dates' they had typed."""
    client.force_login(ops_user)
    html = client.get(DASHBOARD, typed | {"zone": "norte"}).content.decode()
    for name, value in typed.items():
        assert f'name="{name}" value="{value}"' in html
    assert '<option value="norte" selected>' in html
    field_html = re.search(rf'<div class="kpi-field">\s*<label for="kpi-{field}">.*?</div>', html, re.S).group()
    assert 'aria-invalid="true"' in field_html and words in field_html
    assert '<svg class="chart"' not in html and "Deliveries<strong>" not in html
    assert "Correct the filters marked" in html
    download = client.get(DASHBOARD, typed | {"download": "zones"})
    assert not download.streaming and words in download.content.decode()  # no CSV of other dates


def test_a_zone_code_that_names_no_zone_is_said_beside_the_zone(client, ops_user, zones, clock):
    client.force_login(ops_user)
    html = client.get(DASHBOARD, {"from": "2026-11-20", "to": "2026-11-25", "zone": "nowhere"}).content.decode()
    assert 'name="from" value="2026-11-20"' in html and 'name="to" value="2026-11-25"' in html
    field_html = re.search(r'<div class="kpi-field">\s*<label for="kpi-zone">.*?</div>', html, re.S).group()
    assert "No zone has the code “nowhere”." in field_html


def test_by_default_it_shows_the_day_a_zone_east_of_utc_is_already_in(client, ops_user, merchant, clock):
    """At 12:00 UTC on the 25th it is 01:00 on the 26th in Auckland: that zone's orders of tonight count on the
    26th, which the default range (to UTC's today) left out."""
    from tests import factories
    from zones.models import Zone

    Zone.objects.filter(code="centro").update(time_zone="Pacific/Auckland")
    factories.new_delivery(merchant, "late-night")
    client.force_login(ops_user)
    html = client.get(DASHBOARD).content.decode()
    assert 'name="to" value="2026-11-26"' in html
    assert "Deliveries<strong>1</strong>" in html


def test_the_dashboard_is_for_staff_with_the_permission(client, merchant, zones):
    from django.contrib.auth import get_user_model

    assert client.get(DASHBOARD).status_code == 302  # to the console's login
    staff = get_user_model().objects.create_user("viewer", password="x-pass-123456", is_staff=True)
    client.force_login(staff)
    assert client.get(DASHBOARD).status_code == 403


def test_sixty_days_cost_no_more_queries_than_a_week(client, ops_user, zones, clock):
    """Past days come from the rollup rows (one query for all of them), not from the raw data."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from analytics.facts import zone_day_facts
    from analytics.models import ZoneDay

    today = date(2026, 11, 25)
    for zone in zones.values():
        facts = zone_day_facts(zone, today) | {"deliveries": 10, "delivered": 9, "time_to_assign_s": [20.0, 40.0]}
        ZoneDay.objects.bulk_create(
            ZoneDay(zone=zone, day=today - timedelta(days=n), facts=facts) for n in range(1, 61)
        )
    client.force_login(ops_user)

    def queries(days: int) -> int:
        first = (today - timedelta(days=days - 1)).isoformat()
        with CaptureQueriesContext(connection) as captured:
            page = client.get(DASHBOARD, {"from": first, "to": today.isoformat()})
        assert page.status_code == 200
        return len(captured)

    assert queries(60) == queries(7)
    page = client.get(DASHBOARD, {"from": "2026-09-27", "to": "2026-11-25"}).content.decode()
    assert "<strong>1770</strong>" in page  # 59 rolled-up days × 3 zones × 10, and today (live) has none


def test_charts_keep_negative_values_inside_the_plot():
    import re

    from analytics.charts import HEIGHT, Series, bar_chart, line_chart

    svg = line_chart("Margin", ["a", "b", "c"], [Series("margin", [-40.0, None, 10.0])])
    ys = [float(y) for y in re.findall(r'cy="([-\d.]+)"', svg)]
    assert len(ys) == 2 and all(0 < y < HEIGHT for y in ys) and 'data-points="2"' in svg
    bars = bar_chart("Margin by zone", [("x", -5.0), ("y", 5.0)])
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', bars)]
    assert heights[0] == heights[1] > 0  # as tall below zero as above


def test_a_zone_without_snapshots_shows_no_data_not_zero_time_critical(client, ops_user, zones, clock):
    """Centro was measured (never critical: 0 %); Este and Norte were never measured, which is not the same."""
    import re
    from decimal import Decimal

    from django.utils import timezone

    from zones.models import ZoneSnapshot

    counts = {"demand_open": 0, "demand_recent": 0, "supply_available": 1, "supply_busy": 0, "supply_on_break": 0}
    ZoneSnapshot.objects.create(
        zone=zones["centro"], taken_at=timezone.now(), band="normal", pressure=0.0, surge_multiplier=Decimal(1),
        **counts,
    )  # fmt: skip
    client.force_login(ops_user)
    html = client.get(DASHBOARD, {"from": "2026-11-25", "to": "2026-11-25"}).content.decode()
    chart = re.search(r'<svg [^>]*aria-label="Time in the critical band by zone \(%\)".*?</svg>', html).group()
    assert re.findall(r"<rect [^>]*><title>([^<]*)</title>", chart) == ["centro: 0"]
    assert "este: no data" in chart and "norte: no data" in chart
    assert 'data-points="1"' in chart


def test_rates_read_as_percentages_beside_the_charts_in_percent(client, ops_user, merchant, clock):
    """The figures showed rates as fractions ("0.5") beside charts labelled in %: half the orders delivered read
    like half a percent."""
    from core.audit import Actor
    from deliveries.services.progress import deliver_delivery, pick_up_delivery
    from tests import factories

    rider = factories.online_driver(*factories.CENTRO)
    done = factories.assigned_delivery(merchant, rider, "done")
    pick_up_delivery(done.pk, actor=Actor.driver(rider))
    deliver_delivery(done.pk, actor=Actor.driver(rider))
    factories.new_delivery(merchant, "waiting")
    client.force_login(ops_user)
    html = client.get(DASHBOARD, {"from": "2026-11-25", "to": "2026-11-25"}).content.decode()
    assert "Completion rate<strong>50%</strong>" in html
    assert "Cost per delivery (EUR)" in html  # money is in the deployment's currency (RELAY_CURRENCY)
    assert kpi_report(date(2026, 11, 25), date(2026, 11, 25)).deliveries["completion_rate"] == 0.5  # the API's
