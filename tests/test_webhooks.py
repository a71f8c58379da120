"""Signed webhooks to merchants, against a real HTTP endpoint on this machine."""

import hashlib
import hmac
import json

import pytest
from django.urls import reverse

from core.models import AuditEvent
from deliveries.models import Delivery, WebhookDelivery
from deliveries.tasks import send_webhook
from tests import factories
from tests.conftest import api_client_for, sweep_webhooks_every_minute

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


def _attempt_minutes(clock, endpoint, webhook, minutes: int) -> list[int]:
    """The first attempt now, then beat's sweep every minute: at which minutes the merchant was called."""
    send_webhook.apply(args=[str(webhook.pk)])
    called = [0] * len(endpoint.requests)

    def note(minute):
        called.extend([minute] * (len(endpoint.requests) - len(called)))

    sweep_webhooks_every_minute(clock, minutes=minutes, after_each=note)
    return called


def test_a_failing_endpoint_is_retried_six_times_over_twenty_hours_then_marked_failed(
    zones, endpoint, clock, monkeypatch
):
    """A receiver down for a slow deploy, an outage or a night must not lose its events: the 6 retries wait 1 min,
    5 min, 30 min, 2 h, 6 h and 12 h. No wait is handed to the broker (a countdown of hours would sit unacknowledged
    on a worker): the sweep queues each retry when it is due."""
    endpoint.status = 500
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    queued = []
    apply_async = send_webhook.apply_async
    monkeypatch.setattr(send_webhook, "apply_async", lambda *a, **kw: queued.append(kw) or apply_async(*a, **kw))

    called = _attempt_minutes(clock, endpoint, webhook, minutes=24 * 60)

    assert called == [0, 1, 6, 36, 156, 516, 1236]  # API.md: "retried with backoff up to 6 times"
    assert len(queued) == 6 and not any(kw.get("countdown") or kw.get("eta") for kw in queued)
    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts, webhook.next_attempt_at) == ("failed", 7, None)
    assert "500" in webhook.last_error


def test_a_receiver_down_for_an_hour_gets_the_webhook_once_it_is_back(zones, endpoint, clock):
    endpoint.status = 503
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    send_webhook.apply(args=[str(webhook.pk)])

    def back_after_an_hour(minute):
        if minute == 60:
            endpoint.status = 200

    sweep_webhooks_every_minute(clock, minutes=6 * 60, after_each=back_after_an_hour)

    webhook.refresh_from_db()
    assert (webhook.status, webhook.attempts) == ("sent", 5)  # down at 0, 1, 6 and 36 min; sent at 2 h 36 min
    bodies = {request.body for request in endpoint.requests}
    assert bodies == {webhook.body.encode()}  # the same event each time: the receiver dedupes on its `id`


def test_a_sent_webhook_is_not_sent_twice(zones, endpoint):
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api_client_for(merchant.user).post("/api/v1/deliveries", factories.delivery_payload(), format="json")
    webhook = WebhookDelivery.objects.get()
    send_webhook.apply(args=[str(webhook.pk)])
    send_webhook.apply(args=[str(webhook.pk)])
    assert len(endpoint.requests) == 1
    assert Delivery.objects.count() == 1


def test_ops_find_failed_webhooks_in_the_console_and_send_them_again(zones, endpoint, clock, client, ops_user):
    """A webhook failed for good is not lost to the merchant: ops see it with its last error, and once the receiver
    is back they send it again (the same event, on the same retry schedule); a sent one is not sent twice."""
    endpoint.status = 500
    merchant = factories.MerchantFactory(webhook_url=endpoint.url)
    api = api_client_for(merchant.user)
    created = api.post("/api/v1/deliveries", factories.delivery_payload(), format="json").json()
    failed = WebhookDelivery.objects.get()
    _attempt_minutes(clock, endpoint, failed, minutes=24 * 60)
    endpoint.status = 200
    api.post(f"/api/v1/deliveries/{created['id']}/cancel", {"reason": "no stock"}, format="json")
    sent = WebhookDelivery.objects.exclude(pk=failed.pk).get()
    send_webhook.apply(args=[str(sent.pk)])
    assert len(endpoint.requests) == 8

    client.force_login(ops_user)
    changelist = reverse("admin:deliveries_webhookdelivery_changelist")
    listed = client.get(changelist, {"status__exact": "failed"})
    assert list(listed.context["cl"].result_list) == [failed]
    failed.refresh_from_db()
    assert failed.last_error in listed.content.decode() and "500" in failed.last_error
    answer = client.post(
        changelist, {"action": "resend_failed", "_selected_action": [failed.pk, sent.pk]}, follow=True
    ).content.decode()
    assert "Queued to be sent again: 1 of 2." in answer
    assert "Only a failed webhook is sent again" in answer

    sweep_webhooks_every_minute(clock, minutes=1)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("sent", 1)
    assert [request.body for request in endpoint.requests[8:]] == [failed.body.encode()]  # the same event, once
    event = AuditEvent.objects.get(type="webhook.resent", subject_id=failed.pk)
    assert (event.actor_kind, event.payload["attempts"]) == ("ops", 7)
