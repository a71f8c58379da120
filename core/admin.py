from django.contrib import admin

from core.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: events are append-only (no add, change or delete, not even for superusers)."""

    list_display = ["occurred_at", "type", "actor_kind", "actor_id", "subject_kind", "from_state", "to_state"]
    list_filter = ["type", "actor_kind", "subject_kind"]
    search_fields = ["=delivery_id", "=driver_id", "=subject_id"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
