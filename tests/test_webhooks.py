"""Signed webhooks to merchants, against a real HTTP endpoint on this machine."""

import hashlib
import hmac
import json

import pytest

from deliveries.models import Delivery, WebhookDelivery
from deliveries.tasks import send_webhook
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint(receivers):
    return receivers()


def test_every_status_change_is_posted_signed(zones, endpoint):
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api = api_client_for(merchant.user)
    created = api.post("/api/v1/deliveries", factories.delivery_payload(), format="json").json()
    api.post(f"/api/v1/deliveries/{created['id']}/cancel", {"reason": "no stock"}, format="json")
    for webhook in WebhookDelivery.objects.order_by("created_at"):
        send_webhook.apply(args=[str(webhook.pk)])

    bodies = [json.loads(request.body) for request in endpoint.requests]
    assert [b["status"] for b in bodies] == ["pending", "cancelled"]
    assert set(bodies[0]) == {"id", "type", "delivery_id", "external_id", "status", "occurred_at", "data"}
    headers, raw = endpoint.requests[1].headers, endpoint.requests[1].body
    timestamp, signature = (part.split("=", 1)[1] for part in headers["X-Relay-Signature"].split(","))
    expected = hmac.new(merchant.webhook_secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"sent"}


def test_a_failing_endpoint_is_retried_six_times_after_the_first_attempt_then_marked_failed(
    zones, endpoint, monkeypatch
):
    endpoint.status = 500
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    countdowns = []
    retry = send_webhook.retry
    monkeypatch.setattr(send_webhook, "retry", lambda *a, **kw: countdowns.append(kw["countdown"]) or retry(*a, **kw))
    send_webhook.apply(args=[str(webhook.pk)])  # eager: each retry runs at once
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts) == ("failed", 7)  # API.md: "retried ... up to 6 times"
    assert len(endpoint.requests) == 7
    assert countdowns == [2, 4, 8, 16, 32, 64]  # the backoff doubles
    assert "500" in webhook.last_error


def test_a_sent_webhook_is_not_sent_twice(zones, endpoint):
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    send_webhook.apply(args=[str(webhook.pk)])
    send_webhook.apply(args=[str(webhook.pk)])
    assert len(endpoint.requests) == 1
    assert Delivery.objects.count() == 1
