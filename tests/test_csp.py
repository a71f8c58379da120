"""Every page Relay serves carries a Content-Security-Policy that runs no script but the site's own files: the
console (the ops board, a zone's map, the KPI dashboard, the escalation queue, custom pages), the customer's
tracking page and the API docs. What each page's scripts need is checked in Chromium (tests/browser.py fails a
browser test on any violation; tests/test_browser_csp.py)."""

import json
import os
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from config.env import origin_source
from deliveries.models import EscalationLevel
from tests import factories
from tests.servers import ROOT, manage
from tests.test_admin_queue import escalated

pytestmark = pytest.mark.django_db
PRINT_POLICY = (
    "import json; from django.conf import settings; print(json.dumps(settings.CONTENT_SECURITY_POLICY, default=repr))"
)
TILES = "https://{s}.tile.example.com/{z}/{x}/{y}.png"  # Leaflet's template: {s} is a subdomain


def policy(answer) -> dict[str, list[str]]:
    directives = [part.split() for part in answer["Content-Security-Policy"].split(";")]
    return {name: sources for name, *sources in directives}


def assert_strict(answer) -> dict[str, list[str]]:
    assert answer.status_code in (200, 401, 404, 410), answer.status_code
    directives = policy(answer)
    assert directives["default-src"] == directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in answer["Content-Security-Policy"]
    assert "'unsafe-eval'" not in answer["Content-Security-Policy"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"] and answer["X-Frame-Options"] == "DENY"  # the same rule
    assert "'self'" in directives["connect-src"]  # the pages' own sockets and fetches
    return directives


def test_every_console_page_runs_only_the_sites_own_scripts(zones, admin_client):
    escalation = escalated(factories.MerchantFactory(), "stuck-1", level=EscalationLevel.ALERT)
    delivery = escalation.delivery
    pages = [
        reverse("admin:index"),
        reverse("ops-board"),
        reverse("admin:analytics_dashboard"),
        reverse("admin:deliveries_escalation_changelist"),
        reverse("admin:deliveries_escalation_change", args=[escalation.pk]),
        reverse("admin:deliveries_delivery_changelist"),
        reverse("admin:deliveries_delivery_change", args=[delivery.pk]),
        reverse("admin:deliveries_delivery_reassign", args=[delivery.pk]),
        reverse("admin:zones_zone_change", args=[zones["centro"].pk]),
        reverse("admin:django_celery_beat_periodictask_add"),
    ]
    for page in pages:
        answer = admin_client.get(page)
        assert answer.status_code == 200, page
        assert_strict(answer)
        assert "nonce" not in answer["Content-Security-Policy"], page  # no page but Redoc takes inline styles

    admin_client.logout()
    assert_strict(admin_client.get(reverse("admin:login")))


def test_the_tracking_page_and_its_gone_pages_run_only_the_sites_own_scripts(zones, client, settings):
    delivery = factories.new_delivery(factories.MerchantFactory())
    assert_strict(client.get(reverse("tracking-page", args=[delivery.tracking_token])))
    settings.DEBUG = False  # with DEBUG, django-csp leaves 404s alone for Django's debug page
    assert_strict(client.get(reverse("tracking-page", args=["no-such-link"])))


def test_the_api_docs_run_only_the_sites_own_scripts_and_redoc_alone_gets_inline_styles(client):
    swagger = client.get(reverse("api-docs"))
    assert policy(swagger)["style-src"] == ["'self'"]
    assert "<script>" not in swagger.text  # drf-spectacular's inline settings script now comes as a file:
    script = client.get(reverse("api-docs") + "?script=")
    assert script["Content-Type"] == "application/javascript" and "SwaggerUIBundle" in script.text
    assert_strict(swagger)

    redoc = client.get(reverse("api-redoc"))
    styles = assert_strict(redoc)["style-src"]
    nonce = redoc.wsgi_request.csp_nonce
    assert styles[:2] == ["'self'", f"'nonce-{nonce}'"] and f'nonce="{nonce}"' in redoc.text  # Redoc's <style>s
    assert all(source.startswith("'sha256-") for source in styles[2:])  # its bundle's perfect-scrollbar CSS
    assert policy(redoc)["worker-src"] == ["'self'", "blob:"]  # its search index
    assert client.get(reverse("api-redoc")).wsgi_request.csp_nonce != nonce  # a fresh one every time


def test_the_apis_pages_for_browsers_take_no_inline_style(client):
    """A browser asking the API gets DRF's browsable page (a 401: the API takes tokens); its Pygments colours were an
    inline <style> the policy blocks."""
    answer = client.get(reverse("deliveries"), HTTP_ACCEPT="text/html")
    assert answer.status_code == 401 and answer["Content-Type"].startswith("text/html")
    assert "<style" not in answer.text and "rest_framework/css/default.css" in answer.text
    assert_strict(answer)


def test_map_tiles_are_allowed_from_the_tile_servers_origin_alone():
    assert origin_source(TILES) == "https://*.tile.example.com"
    assert origin_source("http://10.0.0.5:8080/tiles/{z}/{x}/{y}.png") == "http://10.0.0.5:8080"
    assert origin_source("https://relay.example.com", scheme="wss") == "wss://relay.example.com"
    directives = subprocess.run(
        manage("shell", "-c", PRINT_POLICY),
        env=os.environ | {"RELAY_MAP_TILES_URL": TILES, "RELAY_PUBLIC_URL": "https://relay.example.com"},
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()[-1]  # fmt: skip
    directives = json.loads(directives)["DIRECTIVES"]
    assert directives["img-src"] == ["'self'", "data:", "https://*.tile.example.com"]
    assert directives["connect-src"] == ["'self'", "wss://relay.example.com"]


def test_a_superusers_own_pages_are_covered_too(admin_client):
    user = get_user_model().objects.get(username="admin")
    assert_strict(admin_client.get(reverse("admin:auth_user_change", args=[user.pk])))
    assert_strict(admin_client.get(reverse("admin:password_change")))


def test_the_apis_json_answers_carry_no_policy_its_html_pages_do(client, merchant_api):
    """A policy restricts a document; on JSON it means nothing and costs on every request of the hot paths."""
    answer = merchant_api.get("/api/v1/deliveries")
    assert answer.status_code == 200 and answer["Content-Type"] == "application/json"
    assert "Content-Security-Policy" not in answer
    page = client.get("/api/v1/deliveries", HTTP_ACCEPT="text/html")
    assert page["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page["Content-Security-Policy"]
