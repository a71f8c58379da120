"""API.md's error shape on every /api/ answer, including the ones Django itself gives."""

import logging

import pytest
from django.db import IntegrityError

from tests import factories

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["code"], set(body)) == (code, {"code", "detail"})
    assert body["detail"]


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_api_path_is_a_json_404(client, settings, debug):
    settings.DEBUG = debug
    assert_error_shape(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error_shape(client.post("/api/v2/deliveries", {}), 404, "not_found")
    assert client.get("/not-the-api").status_code == 404  # the site keeps its own page


@pytest.mark.parametrize("debug", [True, False])
def test_an_uncaught_error_is_a_json_500_and_logged(merchant_api, monkeypatch, settings, caplog, debug):
    from deliveries.api import merchant

    def crash(**kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    settings.DEBUG = debug
    monkeypatch.setattr(merchant, "create_delivery", crash)
    merchant_api.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = merchant_api.post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    assert_error_shape(response, 500, "server_error")
    assert "duplicate key value" not in response.content.decode()  # nothing internal leaks
    assert "duplicate key value" in caplog.text  # the traceback is in the log


def test_a_body_over_the_size_limit_is_a_json_413(merchant_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    payload = factories.delivery_payload(notes="x" * 1000)
    response = merchant_api.post("/api/v1/deliveries", payload, format="json", HTTP_IDEMPOTENCY_KEY="big")
    assert_error_shape(response, 413, "request_too_large")
    response = merchant_api.post("/api/v1/deliveries", payload, format="json")
    assert_error_shape(response, 413, "request_too_large")
