from django.contrib import admin

from deliveries.models import Escalation


@admin.register(Escalation)
class EscalationAdmin(admin.ModelAdmin):
    list_display = ["delivery", "reason", "level", "status", "opened_at"]
    list_filter = ["status", "level", "reason"]
    list_select_related = ["delivery"]
