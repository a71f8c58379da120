"""Merchants, offers and webhooks: records ops look up, changed only by the actions that own them."""

from django.contrib import admin

from deliveries.models import Merchant, Offer, WebhookDelivery


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "webhook_url"]
    raw_id_fields = ["user"]


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["delivery", "driver", "kind", "status", "sent_at", "expires_at", "decline_reason"]
    list_filter = ["status", "kind", "decline_reason"]
    list_select_related = ["delivery", "driver"]
    readonly_fields = [f.name for f in Offer._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["type", "merchant", "delivery", "status", "attempts", "created_at"]
    list_filter = ["status", "type"]
    list_select_related = ["merchant", "delivery"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
