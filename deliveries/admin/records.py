"""Merchants, offers, webhooks and learned travel speeds: records ops look up, changed only by the actions that
own them. None is deleted here: deliveries and their audit trail point at them."""

from django.contrib import admin
from django.db import models

from core.admin_bases import RecordAdmin
from deliveries.models import Merchant, Offer, TravelSpeed, WebhookDelivery


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "webhook_url"]
    raw_id_fields = ["user"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # Django 6's default, without the warning
    readonly_fields = ["webhook_secret"]  # shown once by create_merchant; never edited by hand

    def has_delete_permission(self, request, obj=None):
        return False  # deactivate the merchant's user account instead: its deliveries and webhooks stay


@admin.register(Offer)
class OfferAdmin(RecordAdmin):
    list_display = ["delivery", "driver", "kind", "status", "sent_at", "expires_at", "decline_reason"]
    list_filter = ["status", "kind", "decline_reason"]
    list_select_related = ["delivery", "driver"]
    readonly_fields = [f.name for f in Offer._meta.fields]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordAdmin):
    list_display = ["type", "merchant", "delivery", "status", "attempts", "created_at"]
    list_filter = ["status", "type"]
    list_select_related = ["merchant", "delivery"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]


@admin.register(TravelSpeed)
class TravelSpeedAdmin(RecordAdmin):
    """What the ETA has learned (deliveries/eta.py): a cell counts from 20 trips, shrunk toward the default."""

    list_display = ["zone", "vehicle", "hour_of_week", "trips", "mean_kmh"]
    list_filter = ["zone", "vehicle"]
    list_select_related = ["zone"]
    readonly_fields = [f.name for f in TravelSpeed._meta.fields]
