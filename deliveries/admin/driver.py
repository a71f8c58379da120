"""A driver's console page: state, last seen, what they carry now and did recently, and "Force offline"
(which hands back what they hold before pickup, through the same action as a stale driver)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin_actions import Skipped, apply_each
from core.audit import Actor
from deliveries.models import ACTIVE_STATUSES, Delivery
from deliveries.services.availability import take_offline
from drivers.admin import DriverProfileAdmin
from drivers.models import Driver, DriverState

RECENT = 10


@admin.register(Driver)
class DriverAdmin(DriverProfileAdmin):
    readonly_fields = [*DriverProfileAdmin.readonly_fields, "deliveries"]
    actions = ["force_offline"]

    def has_delete_permission(self, request, obj=None):
        return False  # "Force offline", then deactivate the user account: deliveries and offers point here

    @admin.display(description="current and recent deliveries")
    def deliveries(self, driver: Driver) -> str:
        if driver.pk is None:
            return "-"
        current = list(Delivery.objects.filter(driver=driver, status__in=ACTIVE_STATUSES).order_by("-assigned_at"))
        recent = list(
            Delivery.objects.filter(driver=driver)
            .exclude(status__in=ACTIVE_STATUSES)
            .order_by("-status_changed_at")[:RECENT]
        )
        if not current and not recent:
            return "None yet."
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:deliveries_delivery_change", args=[d.pk]),
                    d.external_id,
                    d.status,
                    f"{d.status_changed_at:%Y-%m-%d %H:%M}",
                )
                for d in current + recent
            ),
        )
        return format_html("<table><tr><th>Delivery</th><th>Status</th><th>Since</th></tr>{}</table>", rows)

    @admin.action(description="Force offline", permissions=["change"])
    def force_offline(self, request, queryset):
        actor = Actor.ops(request.user)

        def offline(driver: Driver) -> None:
            if driver.state == DriverState.OFFLINE:
                raise Skipped("already offline.")
            take_offline(driver.pk, actor=actor, reason="ops", manual=False)

        apply_each(self, request, queryset, offline, done="Set offline")
