"""A driver's console page: state, last seen, what they carry now and did recently, and "Force offline"
(which hands back what they hold before pickup, through the same action as a stale driver)."""

import logging
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.admin_actions import Skipped, apply_each
from core.admin_bases import RoleProfileAdmin
from core.audit import Actor
from deliveries.models import ACTIVE_STATUSES, Delivery, DeliveryStatus
from deliveries.services.availability import apply_capacity, take_offline
from drivers.models import Driver, DriverState

log = logging.getLogger(__name__)

RECENT = 10


@admin.register(Driver)
class DriverAdmin(RoleProfileAdmin):
    list_display = ["name", "state", "vehicle", "home_zone", "capacity", "last_seen_at", "current_zone"]
    list_filter = ["state", "vehicle", "home_zone"]
    search_fields = ["name", "phone", "user__username"]
    list_select_related = ["home_zone", "current_zone"]
    # The state changes only through the actions (here: "Force offline"), so it is audited like any other.
    readonly_fields = [
        "state",
        "state_changed_at",
        "missed_offers_in_row",
        "last_lat",
        "last_lng",
        "last_seen_at",
        "current_zone",
        "message_seq",
        "deliveries",
        "audit_trail",
    ]
    raw_id_fields = ["user"]
    actions = ["force_offline"]
    login_description = "What the driver logs in to the driver app with."

    def get_form(self, request, obj=None, **kwargs):
        kwargs["help_texts"] = {"capacity": "How many deliveries the driver carries at once."}
        return super().get_form(request, obj, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # "Force offline", then deactivate the user account: deliveries and offers point here

    @admin.display(description="current and recent deliveries")
    def deliveries(self, driver: Driver) -> str:
        current = list(Delivery.objects.carried_by(driver).order_by("-assigned_at"))
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
                    f"{timezone.localtime(d.status_changed_at):%Y-%m-%d %H:%M}",
                )
                for d in current + recent
            ),
        )
        return format_html("<table><tr><th>Delivery</th><th>Status</th><th>Since</th></tr>{}</table>", rows)

    @admin.display(description="audit trail")
    def audit_trail(self, driver: Driver) -> str:
        """ "History" lists the console's edits of this page; what the driver did and what was done to them (states,
        shifts, breaks, offers, deliveries) is in the audit trail."""
        url = f"{reverse('admin:core_auditevent_changelist')}?{urlencode({'q': driver.pk})}"
        return format_html('<a href="{}">Every event of this driver</a>', url)

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        # Only what the form changed: the rest of the row (the state, the position, the message numbers) moves with
        # the driver's own actions meanwhile, and writing back what was read a moment ago would undo them.
        obj.save(update_fields=form.changed_data)
        if "capacity" in form.changed_data:
            # The state follows the new capacity through its action, once this form's transaction is in.
            transaction.on_commit(lambda: self._follow_capacity(request, obj))

    def _follow_capacity(self, request, driver: Driver) -> None:
        """The capacity is saved: a failure now is no error page (it once was, for a change that was made), and the
        stale sweep brings the driver's state in line with it (`mark_stale_drivers`)."""
        try:
            apply_capacity(driver.pk, actor=Actor.ops(request.user))
        except Exception:
            log.exception("the state of driver %s did not follow the new capacity", driver.pk)
            self.message_user(
                request,
                f"{driver.name} can now carry {driver.capacity}; whether they are busy or available is brought in "
                "line within 15 seconds.",
                messages.WARNING,
            )

    @admin.action(description="Force offline", permissions=["change"])
    def force_offline(self, request, queryset):
        actor = Actor.ops(request.user)

        def offline(driver: Driver) -> None:
            if driver.state == DriverState.OFFLINE:
                raise Skipped("already offline.")
            held = list(Delivery.objects.carried_by(driver).values_list("external_id", "status"))
            take_offline(driver.pk, actor=actor, reason="ops")
            # What happened to what they carried, which ops would otherwise learn only from each delivery's page.
            back = [ref for ref, status in held if status != DeliveryStatus.PICKED_UP]
            escalated = [ref for ref, status in held if status == DeliveryStatus.PICKED_UP]
            told = [f"{', '.join(back)} back to dispatch"] if back else []
            told += (
                [f"{', '.join(escalated)} escalated (picked up: never reassigned automatically)"] if escalated else []
            )
            if told:
                self.message_user(request, f"{driver.name}: {'; '.join(told)}.", messages.INFO)

        apply_each(self, request, queryset, offline, done="Set offline")
