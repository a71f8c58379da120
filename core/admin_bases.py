"""Bases of the console's model pages: rows that Relay's actions write and ops only read, and the profiles that
give accounts their API roles."""

from urllib.parse import urlencode

from django.contrib import admin
from django.shortcuts import redirect
from django.urls import reverse


class RecordAdmin(admin.ModelAdmin):
    """No adding and no deleting in the console: each change has a domain action (deliveries are created by
    merchants and cancelled, offers made by dispatch, escalations opened by the ladder and resolved, breaks taken
    from the app), and the history they leave is what the timeline, pay and analytics read."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def history_view(self, request, object_id, extra_context=None):
        """ "History" is the record's audit trail: its actions write that, and the console's own change log, which
        Django's history page lists, stays empty."""
        return redirect(f"{reverse('admin:core_auditevent_changelist')}?{urlencode({'q': object_id})}")


class ReadOnlyAdmin(RecordAdmin):
    """Append-only records (the audit trail, driver stream messages, zone snapshots and hints): looked at, never
    edited."""

    def has_change_permission(self, request, obj=None):
        return False


class RoleProfileAdmin(admin.ModelAdmin):
    """A driver's or a merchant's page: the profile that gives an account its API role (`core.permissions.role_of`).
    It stays with the account it was made for. Any staffer who may change the page could otherwise move it to
    another account, their own included, and log in to the API as that driver or merchant with their own password
    (accepting and delivering, creating and cancelling in its name) while its owner was locked out; moved to a
    superuser's account, it turned their API role into a driver's. A profile added here goes to an account with no
    role yet: the model's `clean` asks `core.permissions.role_conflict` and says why another is refused."""

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if obj is None else [*fields, "user"]
