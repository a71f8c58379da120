"""Bases of the console's model pages: rows that Relay's actions write and ops only read, and the profiles that
give accounts their API roles."""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordMixin
from django.core.exceptions import ValidationError
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


class NewAccountForm(SetPasswordMixin, forms.ModelForm):
    """A driver's or a merchant's add form: the profile and the account it logs in with, made together (in the
    admin's transaction: one is not saved without the other). Ops staff make no accounts otherwise: the users'
    pages are superusers' alone, since whoever may change an account may make it a superuser."""

    username = get_user_model()._meta.get_field("username").formfield()
    password1, password2 = SetPasswordMixin.create_password_fields()

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if get_user_model()._default_manager.filter(username__iexact=username).exists():
            raise ValidationError(
                f"“{username}” is taken: choose another (each driver and merchant logs in with an account of its own)."
            )
        return username

    def clean(self):
        self.validate_passwords()
        self.validate_password_for_user(get_user_model()(username=self.cleaned_data.get("username", "")))
        return super().clean()

    def save(self, commit=True):
        account = get_user_model()(username=self.cleaned_data["username"])
        self.instance.user = self.set_password_and_save(account)
        return super().save(commit)


ACCOUNT_FIELDS = ["username", "password1", "password2"]


class RoleProfileAdmin(admin.ModelAdmin):
    """A driver's or a merchant's page: the profile that gives an account its API role (`core.permissions.role_of`).
    Adding one makes its account (`NewAccountForm`). It stays with that account: any staffer who may change the page
    could otherwise move it to another account, their own included, and log in to the API as that driver or
    merchant with their own password (accepting and delivering, creating and cancelling in its name) while its
    owner was locked out; moved to a superuser's account, it turned their API role into a driver's."""

    # Under the add form's login fields: whose login it is (the fields alone read like the staffer's own).
    login_description = ""

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = NewAccountForm
        return super().get_form(request, obj, **kwargs)

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        return excluded if obj is not None else [*excluded, "user"]

    def get_fieldsets(self, request, obj=None):
        """Adding: who the driver or merchant is, then the login made for them. What their actions write later
        (a driver's state, position, deliveries; a merchant's secret, made on saving) is not shown before there
        is any: a row of dashes and an "Offline since" of now read as the record of someone already there."""
        if obj is not None:
            return super().get_fieldsets(request, obj)
        shown = [name for name in self.get_fields(request, obj) if name not in self.get_readonly_fields(request, obj)]
        return [
            (None, {"fields": [name for name in shown if name not in ACCOUNT_FIELDS]}),
            ("Login", {"fields": ACCOUNT_FIELDS, "description": self.login_description}),
        ]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if obj is None else [*fields, "user"]
