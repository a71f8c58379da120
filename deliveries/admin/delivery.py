"""The delivery console: find deliveries (status, zone, escalation level, age), read one's timeline with the
dispatch reasoning, and send them back to dispatch, dispatch them again, cancel or reassign them. Every change
goes through the same actions as the API, so it is locked, audited and announced the same way."""

from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from core.admin_actions import Skipped, apply_each, apply_each_with_note
from core.admin_bases import RecordAdmin
from core.audit import Actor
from core.errors import DomainError
from core.models import AuditEvent
from deliveries import timeline
from deliveries.models import Delivery, EscalationLevel, Merchant
from deliveries.services import reassignment
from deliveries.services.dispatch import DispatchResult, Outcome, dispatch
from deliveries.services.progress import cancel_delivery, deliver_delivery, fail_delivery
from drivers.models import Driver, DriverState


class AgeFilter(admin.SimpleListFilter):
    """How long ago the delivery was created: what ops scan for first when orders pile up."""

    title = "age"
    parameter_name = "age"
    # lookup: (label, at least minutes old, less than minutes old)
    BANDS = {"lt5": ("under 5 min", 0, 5), "5-15": ("5–15 min", 5, 15), "gt15": ("over 15 min", 15, None)}

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _, _) in self.BANDS.items()]

    def queryset(self, request, queryset):
        if self.value() not in self.BANDS:
            return queryset
        _, at_least, less_than = self.BANDS[self.value()]
        now = timezone.now()
        queryset = queryset.filter(created_at__lte=now - timedelta(minutes=at_least))
        if less_than is not None:
            queryset = queryset.filter(created_at__gt=now - timedelta(minutes=less_than))
        return queryset


class EscalationLevelFilter(admin.SimpleListFilter):
    """A fixed list of levels: the default filter would SELECT DISTINCT over every delivery on each page."""

    title = "escalation level"
    parameter_name = "level"
    LEVELS = {
        str(level.value): f"{level.value} {level.label.lower()}" if level else "none" for level in EscalationLevel
    }

    def lookups(self, request, model_admin):
        return list(self.LEVELS.items())

    def queryset(self, request, queryset):
        if self.value() in self.LEVELS:
            return queryset.filter(escalation_level=int(self.value()))
        return queryset


class _OnlineDriverField(forms.ModelChoiceField):
    """Each driver with their state: only an available one can take the delivery, and ops picking a busy or
    resting one were refused after choosing."""

    def label_from_instance(self, driver: Driver) -> str:
        return f"{driver.name} ({driver.get_state_display().lower()})"


class ReassignForm(forms.Form):
    driver = _OnlineDriverField(
        Driver.objects.exclude(state=DriverState.OFFLINE).order_by("name"),
        required=False,
        help_text="Leave empty to send it back to dispatch. A named driver gets a direct offer.",
    )
    force = forms.BooleanField(required=False, help_text="Assign to the named driver at once, without an offer.")
    # Who had the delivery when the form was shown: a second submission of it (a double click, a page sent again)
    # changes nothing, rather than undoing what the first did.
    seen = forms.CharField(widget=forms.HiddenInput, required=False)


# The driver's trail drawn on the page: at one breadcrumb per 10 s, over 5 hours of riding.
TRAIL_POINTS = 2000


def _external_id(delivery: Delivery) -> str:
    return delivery.external_id


def _actor_names(events: list[AuditEvent]) -> dict[tuple[str, str], str]:
    """{(actor kind, actor id): name} of the drivers, merchants and ops users who acted in these events, one query
    per kind: the timeline's "By" names who did it rather than an id (a system actor's id is already a word)."""
    kinds = AuditEvent.ActorKind
    ids = {kind: {e.actor_id for e in events if e.actor_kind == kind and e.actor_id} for kind in kinds}
    found = {
        kinds.DRIVER: Driver.objects.filter(pk__in=ids[kinds.DRIVER]).values_list("pk", "name"),
        kinds.MERCHANT: Merchant.objects.filter(pk__in=ids[kinds.MERCHANT]).values_list("pk", "name"),
        kinds.OPS: get_user_model().objects.filter(pk__in=ids[kinds.OPS]).values_list("pk", "username"),
    }
    return {(kind, str(pk)): name for kind, rows in found.items() if ids[kind] for pk, name in rows}


def _not_offered(result: DispatchResult) -> str:
    """Why a delivery ops sent (back) to dispatch was not offered, in ops' words: one wording for both actions."""
    if result.outcome == Outcome.NO_CANDIDATE:
        return "nobody to offer it to now"
    if result.outcome == Outcome.HELD:
        return timeline.held_until(result.hold_until)
    return timeline.words(result.outcome)


class _InstantField(forms.DateTimeField):
    """An instant a page carries and sends back, written with its offset: as Django writes a time for a person (the
    wall clock of the console's zone) it was ambiguous in the hour a clock change repeats, and the form refused."""

    def prepare_value(self, value):
        return value.isoformat() if isinstance(value, datetime) else value


class ListedAtActionForm(helpers.ActionForm):
    """The changelist's action form, carrying when the list was shown: a bulk action submitted twice (a double
    click, a page sent again) or on a list out of date can leave alone what changed since."""

    listed_at = _InstantField(widget=forms.HiddenInput, required=False, initial=timezone.now)


def _changed_since_listed(request, delivery: Delivery) -> bool:
    try:
        listed_at = ListedAtActionForm.base_fields["listed_at"].clean(request.POST.get("listed_at"))
    except ValidationError:
        listed_at = None  # not sent (a client of its own) or not a time: nothing to tell by
    return listed_at is not None and delivery.status_changed_at > listed_at


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin):
    list_display = ["external_id", "merchant", "status", "zone", "driver", "escalation_level", "age", "created_at"]
    list_filter = ["status", "zone", EscalationLevelFilter, AgeFilter]
    # What ops are given to look one up: the merchant's order number, the id of the API and webhooks, or the
    # token of the customer's tracking link.
    search_fields = ["external_id", "=id", "=tracking_token"]
    list_select_related = ["merchant", "zone", "driver"]
    # The exact total costs a second COUNT over all deliveries on every page; the filtered count is enough.
    show_full_result_count = False
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["send_back_to_dispatch", "dispatch_again", "cancel_deliveries", "mark_delivered", "mark_failed"]
    action_form = ListedAtActionForm
    change_form_template = "admin/deliveries/delivery/change_form.html"

    @admin.display(description="age", ordering="created_at")
    def age(self, delivery: Delivery) -> str:
        return timeline.duration((timezone.now() - delivery.created_at).total_seconds())

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            events = list(AuditEvent.objects.for_delivery(obj.pk))
            names = _actor_names(events)
            context["timeline"] = [
                (
                    event,
                    names.get((event.actor_kind, event.actor_id), event.actor_id),
                    timeline.describe(event.type, event.from_state, event.to_state, event.payload),
                )
                for event in events
            ]
            if self.has_change_permission(request, obj) and obj.status in reassignment.REASSIGNABLE:
                context["reassign_url"] = reverse("admin:deliveries_delivery_reassign", args=[obj.pk])
            context["tracking_page_url"] = reverse("tracking-page", args=[obj.tracking_token])
            context["route"] = {
                "pickup": [obj.pickup_lat, obj.pickup_lng],
                "dropoff": [obj.dropoff_lat, obj.dropoff_lng],
                "trail": [list(point) for point in obj.breadcrumbs.values_list("lat", "lng")[:TRAIL_POINTS]],
                "tiles": settings.RELAY_MAP_TILES_URL,
            }
        # Every field is read-only: a delivery changes through the actions above, not by saving the form.
        context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        reassign = path(
            "<uuid:object_id>/reassign/",
            self.admin_site.admin_view(self.reassign_view),
            name="deliveries_delivery_reassign",
        )
        return [reassign, *super().get_urls()]

    def reassign_view(self, request, object_id):
        delivery = get_object_or_404(Delivery.objects.select_related("driver"), pk=object_id)
        if not self.has_change_permission(request, delivery):
            raise PermissionDenied
        form = None
        if delivery.status in reassignment.REASSIGNABLE:
            form = ReassignForm(request.POST or None, initial={"seen": reassignment.current_holder(delivery)})
        if form is not None and form.is_valid():
            driver = form.cleaned_data["driver"]
            try:
                reassignment.reassign_as_ops_ask(
                    delivery.pk,
                    driver_id=driver.pk if driver else None,
                    force=form.cleaned_data["force"],
                    actor=Actor.ops(request.user),
                    seen=form.cleaned_data["seen"] or None,
                )
            except reassignment.ChangedSinceSeen as exc:
                self.message_user(request, exc.detail, messages.WARNING)
                return redirect("admin:deliveries_delivery_change", delivery.pk)
            except DomainError as exc:
                form.add_error("driver" if exc.fields and "driver_id" in exc.fields else None, exc.detail)
            else:
                delivery.refresh_from_db()
                status = delivery.get_status_display().lower()
                self.message_user(request, f"{delivery.external_id} is now {status}.", messages.SUCCESS)
                return redirect("admin:deliveries_delivery_change", delivery.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reassign {delivery.external_id}",
            "form": form,
            "delivery": delivery,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/deliveries/delivery/reassign.html", context)

    @admin.action(description="Reassign (back to dispatch)", permissions=["change"])
    def send_back_to_dispatch(self, request, queryset):
        actor = Actor.ops(request.user)

        def send_back(delivery: Delivery) -> None:
            if _changed_since_listed(request, delivery):
                # Sent back again, it would withdraw the offer made since (its driver told so, and left out of
                # this delivery's dispatch for good).
                raise Skipped("changed since the list was shown: nothing was done.")
            result = reassignment.send_back_to_dispatch(delivery.pk, actor=actor)
            if not result.offered:
                raise Skipped(f"sent back to dispatch, not offered: {_not_offered(result)}.")

        apply_each(
            self, request, queryset, send_back, done="Sent back to dispatch and offered to a driver", label=_external_id
        )

    @admin.action(description="Re-run dispatch", permissions=["change"])
    def dispatch_again(self, request, queryset):
        actor = Actor.ops(request.user)

        def offer(delivery: Delivery) -> None:
            result = dispatch(delivery.pk, actor=actor)
            if result.offered:
                return
            if result.outcome == Outcome.NOT_PENDING:
                status = result.delivery.status
                raise Skipped(f"not offered: it is {status} (only a pending delivery is dispatched).")
            raise Skipped(f"not offered: {_not_offered(result)}.")

        apply_each(self, request, queryset, offer, done="Offered to a driver", label=_external_id)

    @admin.action(description="Cancel…", permissions=["change"])
    def cancel_deliveries(self, request, queryset):
        actor = Actor.ops(request.user)
        return apply_each_with_note(
            self,
            request,
            queryset,
            lambda delivery, reason: cancel_delivery(delivery.pk, actor=actor, reason=reason),
            title="Cancel deliveries",
            note_label="Reason",
            submit="Cancel these deliveries",
            done="Cancelled",
            label=_external_id,
        )

    # A picked-up delivery is never reassigned (the order is in the driver's bag): when its driver cannot finish it
    # (gone stale or offline with it, a phone lost), ops find out what became of it and record that, on the
    # driver's behalf. Its escalations close and the driver's capacity is freed, as when the driver records it.
    @admin.action(description="Mark delivered (picked up only)…", permissions=["change"])
    def mark_delivered(self, request, queryset):
        actor = Actor.ops(request.user)
        return apply_each_with_note(
            self,
            request,
            queryset,
            lambda delivery, note: deliver_delivery(delivery.pk, actor=actor, proof={"confirmed_by_ops": note}),
            title="Mark deliveries delivered",
            note_label="How the delivery was confirmed",
            submit="Mark these delivered",
            done="Marked delivered",
            label=_external_id,
        )

    @admin.action(description="Mark failed (picked up only)…", permissions=["change"])
    def mark_failed(self, request, queryset):
        actor = Actor.ops(request.user)
        return apply_each_with_note(
            self,
            request,
            queryset,
            lambda delivery, reason: fail_delivery(delivery.pk, actor=actor, reason=reason),
            title="Mark deliveries failed",
            note_label="Reason",
            submit="Mark these failed",
            done="Marked failed",
            label=_external_id,
        )
