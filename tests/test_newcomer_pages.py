"""What a newcomer opens first: the API docs (Swagger UI and Redoc, served by Relay itself so they work without
internet) and the console, branded Relay with the docs one click away."""

import re

import pytest
from django.test import Client

from tests import factories

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


def _assets(page: str) -> list[str]:
    return [url for url in ASSET.findall(page) if not url.startswith("#")]


@pytest.mark.parametrize(("path", "library"), [("/api/docs/", "swagger-ui"), ("/api/redoc/", "redoc")])
def test_api_docs_load_nothing_from_outside(path, library):
    client = Client()
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assets = _assets(html)
    assert any(library in url for url in assets), assets
    assert not [url for url in assets if "//" in url], "the page loads something from another host"
    served = [html]
    for url in assets:  # each one is served from here (the page's own script too)
        if url.startswith("/"):
            response = client.get(url)
            assert response.status_code == 200, url
            body = b"".join(response.streaming_content if response.streaming else [response.content])
            assert body, url
            served.append(body.decode(errors="replace"))
    # The schema's address, in the page or in the page's own script (Swagger UI's settings, `?script`).
    assert any("/api/schema/" in text for text in served)


@pytest.mark.django_db
def test_the_console_is_branded_relay_and_links_the_api_docs(client):
    login = client.get("/admin/login/").content.decode()
    assert "Relay console" in login and "<title>Log in | Relay</title>" in login
    assert "Django administration" not in login

    client.force_login(factories.OpsUserFactory())
    index = client.get("/admin/").content.decode()
    assert "Relay console" in index and "Dispatch operations" in index
    assert 'href="/api/docs/"' in index and 'href="/api/redoc/"' in index
    assert "View site" not in index  # there is no public site to view
    assert "Webhook deliveries" in index and "deliverys" not in index


@pytest.mark.django_db  # closing the response ends the request, which checks the database connection
def test_the_site_has_an_icon(client):
    """Browsers ask every site for /favicon.ico: it answered 404, logged at every page a person opened."""
    icon = client.get("/favicon.ico", follow=True)
    icon.close()  # a file served by WhiteNoise: closed here, not left to the collector
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"


def test_redoc_may_not_fetch_its_logo_from_the_cdn():
    """Redoc's bundle itself fetched https://cdn.redoc.ly/redoc/logo-mini.svg (its "API docs by Redocly" footer) at
    every view: offline, a failed request in the console. The page allows images from Relay only (and the map tile
    server, when there is one)."""
    policy = Client().get("/api/redoc/")["Content-Security-Policy"]
    img_src = next(part.split()[1:] for part in policy.split(";") if part.split()[0] == "img-src")
    assert img_src and all(source in ("'self'", "data:") for source in img_src), img_src
