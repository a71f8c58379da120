"""Merchants, offers, webhooks and learned travel speeds: records ops look up, changed only by the actions that
own them. None is deleted here: deliveries and their audit trail point at them."""

from django.contrib import admin, messages
from django.db import models

from core.admin_actions import apply_each
from core.admin_bases import RecordAdmin, RoleProfileAdmin
from core.audit import Actor
from core.outbound import redacted
from deliveries import webhooks
from deliveries.models import Merchant, Offer, TravelSpeed, WebhookDelivery


@admin.register(Merchant)
class MerchantAdmin(RoleProfileAdmin):
    """The webhook signing secret is shown in full once, to whoever creates the merchant or rotates it: anyone who
    reads it can sign webhooks the merchant will trust, and the console is read by every ops staffer."""

    list_display = ["name", "user", "webhook_url"]
    raw_id_fields = ["user"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, without the warning
    exclude = ["webhook_secret"]
    readonly_fields = ["signing_secret"]
    actions = ["rotate_webhook_secret"]
    login_description = "What the merchant's systems log in to Relay's API with, to create and cancel deliveries."

    def get_form(self, request, obj=None, **kwargs):
        kwargs["labels"] = {"webhook_url": "Webhook URL"}
        kwargs["help_texts"] = {
            "webhook_url": "Where Relay sends the merchant's delivery events (https://…); empty for none. They are "
            "signed with a secret made when the merchant is saved, shown once then."
        }
        return super().get_form(request, obj, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate the merchant's user account instead: its deliveries and webhooks stay

    # Staff who may read merchants but not change them see the webhook URL without its credential
    # (`core.outbound.redacted`); those who change it see it whole, as they must to edit it.
    def get_list_display(self, request):
        return self._webhook_url_for(request, None, super().get_list_display(request))

    def get_fields(self, request, obj=None):
        return self._webhook_url_for(request, obj, super().get_fields(request, obj))

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if self.has_change_permission(request, obj) else [*fields, "webhook_target"]

    def _webhook_url_for(self, request, obj, names):
        if self.has_change_permission(request, obj):
            return names
        return ["webhook_target" if name == "webhook_url" else name for name in names]

    @admin.display(description="webhook URL")
    def webhook_target(self, merchant: Merchant) -> str:
        return redacted(merchant.webhook_url)

    @admin.display(description="webhook signing secret")
    def signing_secret(self, merchant: Merchant) -> str:
        return f"…{merchant.webhook_secret[-4:]} (shown in full only when made: rotate it for a new one)"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            self._show_once(request, obj.name, obj.webhook_secret)

    @admin.action(description="Rotate the webhook signing secret (the new one is shown once)", permissions=["change"])
    def rotate_webhook_secret(self, request, queryset):
        for merchant in queryset:
            self._show_once(request, merchant.name, webhooks.rotate_secret(merchant.pk, actor=Actor.ops(request.user)))

    def _show_once(self, request, name: str, secret: str) -> None:
        self.message_user(
            request,
            f"{name}: webhook signing secret {secret}. Give it to the merchant now: it is not shown again.",
            messages.WARNING,
        )


@admin.register(Offer)
class OfferAdmin(RecordAdmin):
    list_display = ["delivery", "driver", "kind", "status", "sent_at", "expires_at", "decline_reason"]
    list_filter = ["status", "kind", "decline_reason", "unheard"]
    list_select_related = ["delivery", "driver"]
    # What ops are asked about: a merchant's order number, or the driver by name.
    search_fields = ["delivery__external_id", "driver__name"]
    readonly_fields = [f.name for f in Offer._meta.fields]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    """Failed webhooks (every attempt failed, or the URL is refused) are listed by the status filter, with their last
    error; once the merchant's receiver is back, ops send them again."""

    list_display = ["type", "merchant", "delivery", "status", "attempts", "last_error", "created_at"]
    list_filter = ["status", "type"]
    list_select_related = ["merchant", "delivery"]
    search_fields = ["delivery__external_id"]  # the merchant's order number, as they quote it
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    actions = ["resend_failed"]

    @admin.action(description="Send failed webhooks again", permissions=["change"])
    def resend_failed(self, request, queryset):
        actor = Actor.ops(request.user)
        apply_each(
            self,
            request,
            queryset,
            lambda webhook: webhooks.resend_failed_webhook(webhook.pk, actor=actor),
            done="Queued to be sent again",
        )


@admin.register(TravelSpeed)
class TravelSpeedAdmin(RecordAdmin):
    """What the ETA has learned (deliveries/eta.py): a cell counts from 20 trips, shrunk toward the default."""

    list_display = ["zone", "vehicle", "hour_of_week", "trips", "mean_kmh"]
    list_filter = ["zone", "vehicle"]
    list_select_related = ["zone"]
    readonly_fields = [f.name for f in TravelSpeed._meta.fields]
