from django.contrib import admin

from drivers.models import Break, DriverMessage, Shift


class DriverProfileAdmin(admin.ModelAdmin):
    """The driver's profile. Registered by `deliveries.admin.driver`, which adds the driver's deliveries and
    the actions that change availability: those need the deliveries app, and drivers must not import it."""

    list_display = ["name", "state", "vehicle", "home_zone", "capacity", "last_seen_at", "current_zone"]
    list_filter = ["state", "vehicle", "home_zone"]
    search_fields = ["name", "phone", "user__username"]
    list_select_related = ["home_zone", "current_zone"]
    readonly_fields = [
        "state",
        "state_changed_at",
        "missed_offers_in_row",
        "last_lat",
        "last_lng",
        "last_seen_at",
        "current_zone",
        "message_seq",
    ]
    raw_id_fields = ["user"]


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
class BreakAdmin(admin.ModelAdmin):
    list_display = ["driver", "started_at", "ended_at", "over_limit"]
    list_filter = ["over_limit"]
    list_select_related = ["driver"]
    readonly_fields = ["driver", "shift", "started_at", "ended_at", "over_limit"]

    def has_add_permission(self, request):
        return False  # drivers take breaks from the app

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DriverMessage)
class DriverMessageAdmin(admin.ModelAdmin):
    list_display = ["driver", "seq", "type", "sent_at"]
    list_filter = ["type"]
    list_select_related = ["driver"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # what `resume` replays to the driver's app
