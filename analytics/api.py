"""`GET /api/v1/ops/kpis` (API.md): the KPIs of a date range as JSON, or the same rows as streamed CSV."""

import csv
from datetime import timedelta

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.kpis import KpiReport, kpi_report
from core.export import csv_cell
from core.permissions import IsOps
from zones.models import Zone

MAX_DAYS = 366
FORMATS = ("json", "csv")


class KpiQuery(serializers.Serializer):
    # `from` is a Python keyword: the field is declared under its API name below.
    to = serializers.DateField()
    zone = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Zone.objects.all(),
        required=False,
        # DRF's "Object with code=… does not exist." spoke of objects to ops whose bookmarked zone had been renamed.
        error_messages={"does_not_exist": "No zone has the code “{value}”."},
    )
    format = serializers.ChoiceField(choices=FORMATS, required=False)

    def get_fields(self):
        return {"from": serializers.DateField(), **super().get_fields()}

    def validate(self, attrs):
        if attrs["to"] < attrs["from"]:
            raise serializers.ValidationError({"to": ["Must be on or after `from`."]})
        if attrs["to"] - attrs["from"] >= timedelta(days=MAX_DAYS):
            raise serializers.ValidationError({"to": [f"A range is at most {MAX_DAYS} days."]})
        return attrs


class DeliveryFigures(serializers.Serializer):
    deliveries = serializers.IntegerField()
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    completion_rate = serializers.FloatField(allow_null=True)
    cancellation_rate = serializers.FloatField(allow_null=True)
    offers = serializers.IntegerField()
    offers_per_delivery = serializers.FloatField(allow_null=True)
    acceptance_rate = serializers.FloatField(
        allow_null=True, help_text="Accepted of offers accepted, declined or expired"
    )
    decline_reasons = serializers.DictField(child=serializers.IntegerField())
    first_offer_success_rate = serializers.FloatField(allow_null=True)
    time_to_assign_p50_s = serializers.FloatField(allow_null=True)
    time_to_assign_p90_s = serializers.FloatField(allow_null=True)
    reassignments = serializers.IntegerField()
    manual_reassignments = serializers.IntegerField()
    escalations_by_level = serializers.DictField(child=serializers.IntegerField(), help_text='{"1": n, "2": n, "3": n}')
    delivery_time_p50_s = serializers.FloatField(allow_null=True)
    delivery_time_p90_s = serializers.FloatField(allow_null=True)
    eta_mae_s = serializers.FloatField(
        allow_null=True, help_text="Mean absolute error of the dropoff ETA predicted at assignment"
    )
    eta_in_window_rate = serializers.FloatField(allow_null=True, help_text="Delivered inside the predicted window")
    driver_pay = serializers.DecimalField(max_digits=12, decimal_places=2)
    surge_pay = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Part of driver_pay")
    idle_pay = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Paid idle (available) time")
    fees = serializers.DecimalField(max_digits=12, decimal_places=2)
    cost_per_delivery = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    margin_per_delivery = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    idle_share_of_cost = serializers.FloatField(allow_null=True)
    critical_share = serializers.FloatField(allow_null=True, help_text="Share of the zone's minute snapshots critical")
    busy_share = serializers.FloatField(allow_null=True)
    mean_pressure = serializers.FloatField(allow_null=True, help_text="Demand per available driver, on average")
    mean_surge_multiplier = serializers.FloatField(allow_null=True)
    time_to_acknowledge_p50_s = serializers.FloatField(allow_null=True, help_text="Escalations, opened → acknowledged")
    time_to_acknowledge_p90_s = serializers.FloatField(allow_null=True)


class ZoneFigures(DeliveryFigures):
    zone = serializers.CharField()


class DayFigures(DeliveryFigures):
    day = serializers.DateField(help_text="The zones' local day")


class DriverFigures(serializers.Serializer):
    driver_id = serializers.UUIDField()
    name = serializers.CharField()
    zone = serializers.CharField()
    offers_received = serializers.IntegerField()
    accepted = serializers.IntegerField()
    declined = serializers.IntegerField()
    expired = serializers.IntegerField()
    acceptance_rate = serializers.FloatField(allow_null=True)
    decline_reasons = serializers.DictField(child=serializers.IntegerField())
    time_to_respond_p50_s = serializers.FloatField(allow_null=True)
    releases = serializers.IntegerField()
    release_rate = serializers.FloatField(allow_null=True)
    offline_events = serializers.IntegerField()
    stale_events = serializers.IntegerField()
    hours_available = serializers.FloatField()
    hours_busy = serializers.FloatField()
    hours_on_break = serializers.FloatField()
    hours_offline = serializers.FloatField()
    utilisation = serializers.FloatField(allow_null=True)
    deliveries_completed = serializers.IntegerField()
    earnings = serializers.DecimalField(max_digits=12, decimal_places=2)


class KpiReportOutput(serializers.Serializer):
    deliveries = DeliveryFigures()
    zones = ZoneFigures(many=True)
    days = DayFigures(many=True)
    drivers = DriverFigures(many=True)


class CsvRenderer(renderers.BaseRenderer):
    """Lets `?format=csv` through content negotiation; the view streams the CSV itself."""

    media_type = "text/csv"
    format = "csv"


def _flat(row: dict) -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": count for name, count in sorted(value.items())})
        else:
            flat[key] = value
    return flat


TABLES = ("deliveries", "zones", "days", "drivers")


def kpi_rows(report: KpiReport, tables: tuple[str, ...] = TABLES) -> list[dict]:
    """The rows of the report's tables, flat, each with its table's name: what a CSV holds, line for line."""
    rows = []
    for table in tables:
        content = getattr(report, table)
        rows += [{"table": table} | _flat(row) for row in (content if isinstance(content, list) else [content])]
    return rows


class _Echo:
    def write(self, value):
        return value


def stream_csv(rows: list[dict], filename: str) -> StreamingHttpResponse:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(_Echo(), fieldnames=columns)
    lines = (
        writer.writerow({key: "" if value is None else csv_cell(value) for key, value in row.items()}) for row in rows
    )
    response = StreamingHttpResponse(
        (line for part in ([writer.writeheader()], lines) for line in part), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class KpiView(APIView):
    permission_classes = [IsOps]
    ops_permission = "analytics.view_zoneday"
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]

    def perform_content_negotiation(self, request, force=False):
        if request.query_params.get("format", "json") not in FORMATS:
            # Answered in JSON: the query's validation then reports the bad format as a 400 naming the field.
            return renderers.JSONRenderer(), renderers.JSONRenderer.media_type
        if request.method == "OPTIONS":
            # `format` chooses how the report is given, and OPTIONS gives no report: its description of the
            # endpoint is JSON, as without `format` (the CSV renderer renders nothing itself: it was a 500).
            return renderers.JSONRenderer(), renderers.JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)

    def handle_exception(self, exc):
        # A refusal is answered in API.md's JSON error shape even when CSV was asked for: the CSV renderer renders
        # nothing itself (the view streams the rows), so an error rendered by it was a 500.
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = renderers.JSONRenderer.media_type
        return super().handle_exception(exc)

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True, description="First local day"),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True, description="Last local day (included)"),
            OpenApiParameter("zone", OpenApiTypes.STR, description="A zone's code; every zone when absent"),
            OpenApiParameter("format", OpenApiTypes.STR, enum=FORMATS, description="csv: the same rows, streamed"),
        ],
        responses={
            (200, "application/json"): KpiReportOutput,
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR, description="format=csv: every row of the JSON's tables, flat, with a `table` column"
            ),
        },
    )
    def get(self, request):
        query = KpiQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        first, last, zone = query.validated_data["from"], query.validated_data["to"], query.validated_data.get("zone")
        report = kpi_report(first, last, zone=zone)
        if request.accepted_renderer.format == "csv":
            return stream_csv(kpi_rows(report), f"kpis-{first}-{last}.csv")
        return Response(report.as_dict())
