from django.contrib import admin

from zones.models import Zone


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "active", "offer_timeout_s", "search_radius_km", "time_zone"]
    list_filter = ["active"]
    search_fields = ["code", "name"]
    filter_horizontal = ["neighbours"]

    def has_delete_permission(self, request, obj=None):
        return False  # untick "active" instead: deliveries, drivers and analytics keep their zone

    fieldsets = [
        (None, {"fields": ["code", "name", "active", "time_zone", "polygon", "neighbours"]}),
        ("Offers", {"fields": ["offer_timeout_s", "search_radius_km", "missed_offers_before_offline"]}),
        (
            "Escalation",
            {
                "fields": [
                    "escalation_warn_s",
                    "escalation_alert_s",
                    "escalation_critical_s",
                    "escalation_max_offer_rounds",
                    "escalation_radius_factor",
                    "not_moving_alert_s",
                    "dropoff_overdue_alert_s",
                    "max_reassignments",
                ]
            },
        ),
        ("Drivers", {"fields": ["stale_after_s", "break_limit_s"]}),
        (
            "Money",
            {
                "fields": [
                    "fee_base",
                    "fee_per_km",
                    "pay_base",
                    "pay_per_km",
                    "pay_per_minute",
                    "pay_waiting_per_minute",
                ]
            },
        ),
    ]
