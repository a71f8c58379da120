"""The escalation queue (SPEC 2.3): what is still unresolved first, then most severe, then oldest; ops acknowledge
and resolve with a note.
Escalations change only through those actions, so each change is audited and pushed to the ops feed."""

from django.contrib import admin
from django.contrib.admin import helpers
from django.db.models import Case, Value, When
from django.utils import timezone

from core.admin_actions import apply_each, apply_each_with_note
from core.admin_bases import RecordAdmin
from core.audit import Actor
from core.models import AuditEvent
from deliveries import timeline
from deliveries.models import Escalation, EscalationStatus
from deliveries.services.escalations import acknowledge_escalation, resolve_escalation

# Resolved escalations stay listed (the status filter finds them), but after every unresolved one: weeks of
# resolved history must not push today's open escalation off the first page.
RESOLVED_LAST = Case(When(status=EscalationStatus.RESOLVED, then=Value(1)), default=Value(0)).asc()


def _label(escalation: Escalation) -> str:
    return f"{escalation.delivery.external_id} ({escalation.get_reason_display()})"


@admin.register(Escalation)
class EscalationAdmin(RecordAdmin):
    list_display = ["delivery", "zone", "reason", "level", "status", "age", "opened_at", "acknowledged_at"]
    list_filter = ["status", "level", "reason"]
    list_select_related = ["delivery__zone"]
    ordering = [RESOLVED_LAST, "-level", "opened_at"]
    search_fields = ["delivery__external_id"]
    # The detail as stored says its times of day in UTC (the API's and webhooks' text): shown in the viewer's zone.
    readonly_fields = [f.name if f.name != "detail" else "shown_detail" for f in Escalation._meta.fields]
    exclude = ["detail"]
    actions = ["acknowledge", "resolve"]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        # The board links here: what can still be done to this escalation is offered on its page.
        can_act = obj is not None and self.has_change_permission(request, obj)
        context["action_checkbox_name"] = helpers.ACTION_CHECKBOX_NAME
        context["escalation_actions"] = [
            (action, label)
            for action, label, allowed in [
                ("acknowledge", "Acknowledge", obj is not None and obj.status == EscalationStatus.OPEN),
                ("resolve", "Resolve…", obj is not None and obj.status != EscalationStatus.RESOLVED),
            ]
            if can_act and allowed
        ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="zone", ordering="delivery__zone__code")
    def zone(self, escalation: Escalation) -> str:
        return escalation.delivery.zone.code

    @admin.display(description="detail")
    def shown_detail(self, escalation: Escalation) -> str:
        detail = escalation.detail
        trail = AuditEvent.objects.filter(subject_kind="escalation", subject_id=escalation.pk)
        for payload in trail.filter(payload__has_key="detail_at").values_list("payload", flat=True):
            detail = detail.replace(payload["detail"], timeline.shown_detail(payload))
        return detail

    @admin.display(description="open for")
    def age(self, escalation: Escalation) -> str:
        seconds = escalation.open_seconds
        if seconds is None:
            seconds = (timezone.now() - escalation.opened_at).total_seconds()
        return timeline.duration(seconds)

    @admin.action(description="Acknowledge", permissions=["change"])
    def acknowledge(self, request, queryset):
        apply_each(
            self,
            request,
            queryset,
            lambda escalation: acknowledge_escalation(escalation.pk, actor=Actor.ops(request.user)),
            done="Acknowledged",
            label=_label,
        )

    @admin.action(description="Resolve…", permissions=["change"])
    def resolve(self, request, queryset):
        return apply_each_with_note(
            self,
            request,
            queryset,
            lambda escalation, note: resolve_escalation(escalation.pk, actor=Actor.ops(request.user), note=note),
            title="Resolve escalations",
            note_label="What was done",
            submit="Resolve",
            done="Resolved",
            label=_label,
        )
