from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet

from core.admin_bases import ReadOnlyAdmin
from zones.models import Zone, ZoneHint, ZoneSnapshot


def zone_map_data(zone: Zone | None) -> dict:
    """What the zone page's map draws: the zone (as saved), its neighbours and the other active zones."""
    others = Zone.objects.filter(active=True).exclude(pk=zone.pk if zone else None).order_by("code")
    neighbours = set(zone.neighbours.values_list("pk", flat=True)) if zone else set()
    return {
        "tiles_url": settings.RELAY_MAP_TILES_URL,
        "zones": [
            {
                "code": z.code,
                "name": z.name,
                "polygon": z.polygon,
                "role": "neighbour" if z.pk in neighbours else "other",
            }
            for z in others
        ]
        + ([{"code": zone.code, "name": zone.name, "polygon": zone.polygon, "role": "self"}] if zone else []),
    }


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    """A zone's page shows it on a map beside its neighbours; a polygon that is not valid or that overlaps another
    active zone is refused with the reason (Zone.clean, the same check `load_zones` runs)."""

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
            "Balancing",
            {
                "description": "Pressure = open deliveries per available driver. The band sets the surge on the pay "
                "of new offers; a critical zone also searches its calm neighbours and hints their drivers.",
                "fields": ["busy_pressure", "critical_pressure", "surge_normal", "surge_busy", "surge_critical"],
            },
        ),
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

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None and "neighbours" in form.base_fields:
            # Not its own neighbour: its searches would read its drivers twice, each a candidate twice.
            form.base_fields["neighbours"].queryset = Zone.objects.exclude(pk=obj.pk)
        return form

    def construct_change_message(self, request, form, formsets, add=False):
        """A zone's history says what each changed field was and became (Django's names the fields only): ops
        asking why offers now expire sooner find who changed the timeout, when, and from what."""
        if add or not form.changed_data:  # Django's own: "Added." / "No fields changed."
            return super().construct_change_message(request, form, formsets, add)
        changes = [
            f"{form.fields[name].label}: {_shown(form.initial.get(name))} → {_shown(form.cleaned_data.get(name))}"
            if name != "polygon"
            else "Polygon redrawn"
            for name in form.changed_data
        ]
        return f"Changed {'; '.join(changes)}."

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["zone_map"] = zone_map_data(obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


def _shown(value) -> str:
    """A zone field's value as its history shows it (neighbours by code)."""
    if isinstance(value, (list, tuple, QuerySet)):
        return ", ".join(sorted(zone.code for zone in value)) or "none"
    return str(value)


@admin.register(ZoneSnapshot)
class ZoneSnapshotAdmin(ReadOnlyAdmin):
    list_display = [
        "taken_at",
        "local_time",
        "zone",
        "band",
        "pressure",
        "surge_multiplier",
        "demand_open",
        "supply_available",
    ]
    list_filter = ["band", "zone"]
    list_select_related = ["zone"]
    date_hierarchy = "taken_at"
    show_full_result_count = False

    @admin.display(description="zone's local time")
    def local_time(self, snapshot: ZoneSnapshot) -> str:
        return snapshot.zone.local_time(snapshot.taken_at).strftime("%Y-%m-%d %H:%M %Z")


@admin.register(ZoneHint)
class ZoneHintAdmin(ReadOnlyAdmin):
    list_display = ["sent_at", "driver", "from_zone", "zone", "surge_multiplier", "outcome", "entered_at"]
    list_filter = ["outcome", "zone"]
    list_select_related = ["driver", "zone", "from_zone"]
    date_hierarchy = "sent_at"
