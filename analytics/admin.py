from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from analytics.dashboard import kpi_dashboard
from analytics.models import ZoneDay


@admin.register(ZoneDay)
class ZoneDayAdmin(admin.ModelAdmin):
    """The nightly rollup rows (read only: the rollup writes them) and the KPI dashboard built on them."""

    list_display = ["day", "zone", "deliveries", "computed_at"]
    list_filter = ["zone"]
    date_hierarchy = "day"

    @admin.display(description="deliveries")
    def deliveries(self, row: ZoneDay) -> int:
        return row.facts.get("deliveries", 0)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        dashboard = self.admin_site.admin_view(lambda request: kpi_dashboard(request, self.admin_site))
        return [path("dashboard/", dashboard, name="analytics_dashboard"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        link = format_html('<a href="{}">Open the KPI dashboard</a>', reverse("admin:analytics_dashboard"))
        return super().changelist_view(
            request, (extra_context or {}) | {"title": format_html("Daily rollups · {}", link)}
        )
