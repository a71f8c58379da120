"""API.md's error shape on every /api/ answer, including the ones Django itself gives."""

import logging

import pytest
from django.db import IntegrityError

from deliveries.models import Delivery
from tests import factories
from tests.conftest import api_client_for

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


def assert_bad_input(response, code: str, field: str) -> None:
    """API.md: a 400 says what was wrong in `fields`, by the name of what was wrong."""
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert (body["code"], set(body)) == (code, {"code", "detail", "fields"})
    assert body["fields"][field] and all(isinstance(error, str) for error in body["fields"][field])


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/api/v1/auth/token", None),
        ("/api/v1/deliveries", "merchant"),
        ("/api/v1/driver/locations", "driver"),
        ("/api/v1/driver/availability", "driver"),
    ],
)
def test_a_body_that_is_not_json_is_a_400_with_fields(client, zones, path, role):
    users = {"merchant": factories.MerchantFactory, "driver": factories.DriverFactory}
    api = api_client_for(users[role]().user) if role else client
    response = api.post(path, data='{"points": [', content_type="application/json")
    assert_bad_input(response, "parse_error", "non_field_errors")


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/api/v1/auth/token", None),
        ("/api/v1/deliveries", "merchant"),
        ("/api/v1/driver/locations", "driver"),
    ],
)
def test_a_body_nested_deeper_than_python_reads_is_a_400_with_fields(client, zones, path, role):
    """A 2 KB body of nested arrays made Python's JSON reader run out of stack: a 500, open to anyone at login."""
    users = {"merchant": factories.MerchantFactory, "driver": factories.DriverFactory}
    api = api_client_for(users[role]().user) if role else client
    response = api.post(path, data="[" * 5000 + "]" * 5000, content_type="application/json")
    assert_bad_input(response, "parse_error", "non_field_errors")


def test_a_form_body_is_refused_as_not_json(merchant_api):
    """API.md: JSON bodies. A form cannot carry a delivery's pickup; it is refused as such, not half read."""
    response = merchant_api.post(
        "/api/v1/deliveries", data="external_id=x", content_type="application/x-www-form-urlencoded"
    )
    assert_error_shape(response, 415, "unsupported_media_type")
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("place", ["pickup", "dropoff"])
def test_true_and_false_are_not_coordinates(merchant_api, place):
    """API.md: coordinates are numbers. Read as 1.0 and 0.0, a dropoff of true/false became a billable delivery
    in the Gulf of Guinea."""
    payload = factories.delivery_payload()
    payload[place] |= {"lat": True, "lng": False}
    response = merchant_api.post("/api/v1/deliveries", payload, format="json")
    assert_bad_input(response, "invalid", place)
    assert set(response.json()["fields"][place]) == {"lat", "lng"}
    assert not Delivery.objects.exists()


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_idempotency_key_of_the_wrong_length_is_a_400_naming_the_header(merchant_api, key):
    response = merchant_api.post(
        "/api/v1/deliveries", factories.delivery_payload(), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert_bad_input(response, "invalid_idempotency_key", "Idempotency-Key")
    assert not Delivery.objects.exists()


def test_a_request_django_itself_refuses_is_a_400_with_fields(client, settings):
    settings.ALLOWED_HOSTS = ["relay.example"]
    response = client.get("/api/v1/deliveries", HTTP_HOST="elsewhere.example")
    assert_bad_input(response, "bad_request", "non_field_errors")
