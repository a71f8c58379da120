from django.contrib import admin
from django.http import HttpResponse

from core.admin_bases import ReadOnlyAdmin
from core.export import CONTENT_TYPES, write_events
from core.models import AuditEvent


class TypeFamilyFilter(admin.SimpleListFilter):
    """Filter by the part of the type before the dot. A fixed list: the default filter would run
    SELECT DISTINCT over the whole trail on every page load."""

    title = "event family"
    parameter_name = "family"
    FAMILIES = ["delivery", "dispatch", "offer", "escalation", "driver", "shift", "zone"]

    def lookups(self, request, model_admin):
        return [(family, family) for family in self.FAMILIES]

    def queryset(self, request, queryset):
        if self.value() in self.FAMILIES:
            return queryset.filter(type__startswith=f"{self.value()}.")
        return queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: events are append-only (no add, change or delete, not even for superusers)."""

    list_display = ["occurred_at", "type", "actor_kind", "actor_id", "subject_kind", "from_state", "to_state"]
    list_filter = [TypeFamilyFilter, "actor_kind"]
    search_fields = ["=type", "=delivery_id", "=driver_id", "=subject_id"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False
    actions = ["download_csv", "download_jsonl"]

    @admin.action(description="Download selected events as CSV")
    def download_csv(self, request, queryset):
        return self._download(queryset, "csv")

    @admin.action(description="Download selected events as JSON lines")
    def download_jsonl(self, request, queryset):
        return self._download(queryset, "jsonl")

    def _download(self, queryset, fmt: str) -> HttpResponse:
        response = HttpResponse(content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="audit-events.{fmt}"'
        write_events(queryset.order_by("id").iterator(chunk_size=2000), response, fmt)
        return response
