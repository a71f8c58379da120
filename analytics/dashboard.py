"""The KPI dashboard in the ops console: charts of a date range (from the nightly rollups, so 60 days stay fast),
filters by dates and zone, and every table as CSV."""

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from analytics.api import TABLES, KpiQuery, kpi_rows, stream_csv
from analytics.charts import Series, bar_chart, line_chart
from analytics.facts import local_today
from analytics.kpis import KpiReport, kpi_report
from zones.models import Zone

DEFAULT_DAYS = 14
PERMISSION = "analytics.view_zoneday"
FIELDS = (("from", "From"), ("to", "To"), ("zone", "Zone"))


def _today():
    """The latest of the zones' local dates: a zone east of UTC may already be in tomorrow, and its day so far
    must be in the default range (days count by the zone's local date)."""
    return max((local_today(zone) for zone in Zone.objects.all()), default=timezone.localdate())


def _query(request) -> tuple[dict, dict, dict]:
    """The filters as typed (the last 14 days, every zone, for those left empty), what they mean if they are
    right, and the errors in them by field. The form shows what was typed with its errors beside it: a bad date
    put back to the default range had the ops staffer retype it without seeing what was wrong."""
    today = _today()
    asked = {"from": (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat(), "to": today.isoformat()}
    asked |= {key: request.GET[key] for key, _label in FIELDS if request.GET.get(key)}
    query = KpiQuery(data=asked)
    if query.is_valid():
        return asked, query.validated_data, {}
    return asked, {}, query.errors


def _charts(report: KpiReport) -> list:
    days = [row["day"][5:] for row in report.days]

    def series(name: str, field: str, scale: float = 1.0) -> Series:
        return Series(name, [None if row[field] is None else float(row[field]) * scale for row in report.days])

    reasons = sorted(report.deliveries["decline_reasons"].items())
    return [
        line_chart("Deliveries per day", days, [series("created", "deliveries"), series("delivered", "delivered")]),
        line_chart(
            "Time to assign (s)", days, [series("p50", "time_to_assign_p50_s"), series("p90", "time_to_assign_p90_s")]
        ),
        line_chart("Acceptance rate (%)", days, [series("acceptance", "acceptance_rate", 100)]),
        line_chart("ETA error, MAE (s)", days, [series("MAE", "eta_mae_s")]),
        line_chart(
            "Cost and margin per delivery",
            days,
            [series("cost", "cost_per_delivery"), series("margin", "margin_per_delivery")],
        ),
        bar_chart("Deliveries by zone", [(row["zone"], row["deliveries"]) for row in report.zones]),
        bar_chart(
            "Time in the critical band by zone (%)",
            [
                (row["zone"], None if row["critical_share"] is None else row["critical_share"] * 100)
                for row in report.zones
            ],
        ),
        bar_chart("Declines by reason", [(reason or "none", count) for reason, count in reasons]),
    ]


def kpi_dashboard(request, admin_site):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    asked, filters, errors = _query(request)
    context = admin_site.each_context(request) | {
        "title": "KPI dashboard",
        "fields": [
            {"name": name, "label": label, "value": asked.get(name, ""), "errors": errors.get(name, [])}
            for name, label in FIELDS
        ],
        "errors": errors,
        "zones": Zone.objects.all(),
    }
    if errors:
        # No figures (nor a CSV) for filters that are wrong: the default range's, under the dates typed, read as
        # the figures of those dates.
        return TemplateResponse(request, "admin/analytics/dashboard.html", context)
    report = kpi_report(filters["from"], filters["to"], zone=filters.get("zone"))
    if (table := request.GET.get("download")) in TABLES:
        return stream_csv(kpi_rows(report, (table,)), f"kpis-{table}-{filters['from']}-{filters['to']}.csv")
    context |= {
        "report": report,
        "charts": _charts(report),
        "query": request.GET.urlencode(),
        "tables": TABLES,
        "currency": settings.RELAY_CURRENCY,  # money is in the deployment's currency (API.md)
    }
    return TemplateResponse(request, "admin/analytics/dashboard.html", context)
