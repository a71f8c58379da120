from django.contrib import admin
from django.http import HttpResponse
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from core.admin_bases import ReadOnlyAdmin
from core.export import CONTENT_TYPES, write_events
from core.models import ApiToken, AuditEvent


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
    # The latest first, as every other record page: weeks of trail must not put today's events on the last page.
    ordering = ["-id"]
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


# DRF's token page listed every key in full: to anyone given its view permission, every merchant's, driver's and
# superuser's API access. Replaced by one that shows whose token it is and lets it be revoked.
admin.site.unregister(TokenProxy)


@admin.register(ApiToken)
class ApiTokenAdmin(TokenAdmin):
    """Tokens by user (DRF's page, whose links name the user, not the key), revoked by deleting one. None is made
    or changed here: users log in for theirs."""

    list_display = ["user", "key_ending", "created"]
    list_display_links = ["user"]

    @admin.display(description="key")
    def key_ending(self, token: ApiToken) -> str:
        return f"…{token.key[-4:]}"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_deleted_objects(self, objs, request):
        # Django's list links each object's page by its pk, here the key: named, not linked.
        _, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return [f"API token: {token}" for token in objs], counts, perms_needed, protected
