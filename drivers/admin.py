"""Shifts, breaks and driver messages. The Driver page itself is `deliveries.admin.driver`: it shows the driver's
deliveries and acts on availability, which need the deliveries app (and drivers must not import it)."""

from django.contrib import admin

from core.admin_bases import ReadOnlyAdmin, RecordAdmin
from drivers.models import Break, DriverMessage, Shift


@admin.register(Shift)
class ShiftAdmin(admin.ModelAdmin):
    list_display = ["driver", "planned_start", "planned_end", "started_at", "ended_at"]
    list_select_related = ["driver"]
    raw_id_fields = ["driver"]
    # A shift starts and ends when its driver goes online and offline; only the plan is edited here.
    readonly_fields = ["started_at", "ended_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # worked time is what pay and analytics are computed from


@admin.register(Break)
class BreakAdmin(RecordAdmin):
    list_display = ["driver", "started_at", "ended_at", "over_limit"]
    list_filter = ["over_limit"]
    list_select_related = ["driver"]
    readonly_fields = ["driver", "shift", "started_at", "ended_at", "over_limit"]


@admin.register(DriverMessage)
class DriverMessageAdmin(ReadOnlyAdmin):
    list_display = ["driver", "seq", "type", "sent_at"]
    list_filter = ["type"]
    list_select_related = ["driver"]
