"""Signed webhooks to merchants (API.md, Merchant): an outbox row per event, sent after commit by a task."""

import hashlib
import hmac
import time
import uuid

from django.conf import settings

from core import outbound
from core.audit import Actor, atomic_action, record_event
from core.queue import enqueue_on_commit
from deliveries import messages
from deliveries.models import Delivery, Merchant, WebhookDelivery, new_secret

# API.md: "retried with backoff up to 6 times": the first attempt, then up to 6 retries.
MAX_RETRIES = 6
MAX_ATTEMPTS = 1 + MAX_RETRIES


def rotate_secret(merchant_id, *, actor: Actor) -> str:
    """A new signing secret for the merchant's webhooks (the next attempt of every pending one signs with it),
    audited without its value. Returns it, to be shown once to the person who asked."""
    with atomic_action():
        merchant = Merchant.objects.select_for_update().get(pk=merchant_id)
        merchant.webhook_secret = new_secret()
        merchant.save(update_fields=["webhook_secret"])
        record_event("merchant.webhook_secret_rotated", actor=actor, subject=merchant)
    return merchant.webhook_secret


def sign(secret: str, timestamp: int, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def enqueue_webhook(delivery: Delivery, type: str, data: dict | None = None) -> WebhookDelivery | None:
    """Queue a webhook about the delivery, inside the transaction of the change it reports."""
    merchant = delivery.merchant
    if not merchant.webhook_url:
        return None
    event_id = uuid.uuid4()
    body = messages.webhook_body(event_id, type, delivery, data)
    webhook = WebhookDelivery.objects.create(id=event_id, merchant=merchant, delivery=delivery, type=type, body=body)
    from deliveries.tasks import send_webhook

    enqueue_on_commit(send_webhook, str(webhook.pk))
    return webhook


def post_webhook(webhook: WebhookDelivery) -> None:
    """One attempt (no redirects, public addresses only, one time limit: see `core.outbound`). Raises
    `outbound.Refused` for a URL that may not be called, `outbound.Failed` for an attempt that did not succeed."""
    timestamp = int(time.time())
    outbound.post(
        webhook.merchant.webhook_url,
        webhook.body.encode(),
        {
            "Content-Type": "application/json",
            "X-Relay-Signature": sign(webhook.merchant.webhook_secret, timestamp, webhook.body),
            "X-Relay-Event": webhook.type,
        },
        timeout_s=settings.RELAY_WEBHOOK_TIMEOUT_S,
        allow_private=settings.RELAY_WEBHOOK_ALLOW_PRIVATE_TARGETS,
    )
