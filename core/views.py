from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from core import health, metrics
from core.errors import json_error
from core.permissions import role_of
from core.tokens import valid_token


def _may_scrape(request) -> bool | None:
    """True for staff (session or ops API token) and the scrape token; None when nobody authenticated."""
    if settings.RELAY_METRICS_PUBLIC:
        return True
    kind, _, credential = request.headers.get("Authorization", "").partition(" ")
    if kind == "Bearer" and settings.RELAY_METRICS_TOKEN:
        return constant_time_compare(credential, settings.RELAY_METRICS_TOKEN) or None
    user = request.user
    if kind == "Token":
        token = valid_token(credential)
        user = token.user if token else None
    if user is None or not user.is_authenticated:
        return None
    return role_of(user) == "ops"


@require_safe
def metrics_view(request):
    allowed = _may_scrape(request)
    if allowed is None:
        return json_error(401, "not_authenticated", "Metrics need a staff session, an ops token or the scrape token.")
    if not allowed:
        return json_error(403, "permission_denied", "Metrics are for ops staff.")
    return HttpResponse(metrics.render_prometheus(), content_type=CONTENT_TYPE_LATEST)


@require_safe
def healthz(request):
    """The process answers (no dependency checked: a load balancer must not drop every server when the
    database blips)."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request):
    checks = health.readiness()
    ready = all(checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


@require_safe
def favicon(request):
    """Browsers ask every site for /favicon.ico: without it each page view logged a 404."""
    return redirect(static("relay/favicon.svg"), permanent=True)
