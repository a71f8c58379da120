"""The ops console's site: branded Relay, linking the API docs, and with its login form rate-limited like the
API's token login (same limits, same budget of failed logins per address and per username)."""

import math

from django.contrib import admin
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse

from core.throttling import logged_in, login_attempt


class RelayAdminSite(admin.AdminSite):
    site_header = "Relay console"
    site_title = "Relay"
    index_title = "Dispatch operations"
    site_url = None  # there is no public site to "view"; the API docs are linked beside the user links

    def login(self, request, extra_context=None):
        if request.method != "POST":
            return super().login(request, extra_context)
        wait, throttles = login_attempt(request)
        if wait is not None:
            context = {**self.each_context(request), "title": "Too many attempts", "wait_s": math.ceil(wait)}
            return TemplateResponse(request, "admin/relay/login_throttled.html", context, status=429)
        response = super().login(request, extra_context)
        if isinstance(response, HttpResponseRedirect):  # the form was valid: logged in
            logged_in(throttles)
        return response
