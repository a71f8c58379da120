"""Signed webhooks to merchants (API.md, Merchant): an outbox row per event, sent after commit by a task.

A webhook's `next_attempt_at` says when its next attempt is due: at once when it is written, then after each failed
attempt one of `RETRY_DELAYS` later. The task queued on commit makes the first attempt; the beat sweep
(`deliveries.tasks.send_unsent_webhooks`, every minute) queues every pending webhook that is due, which makes the
retries and catches any attempt whose task was lost. No wait ever sits in the broker: a countdown of hours would be
held unacknowledged by a worker (RabbitMQ closes the channel past its consumer_timeout; Redis' broker redelivers past
its visibility timeout)."""

import hashlib
import hmac
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core import outbound
from core.audit import Actor, atomic_action, record_event
from core.errors import DomainError
from core.purge import delete_in_batches
from core.queue import enqueue_on_commit
from deliveries import messages
from deliveries.models import Delivery, Merchant, WebhookDelivery, new_secret

# API.md: "retried with backoff up to 6 times": the first attempt, then a retry after each of these waits. They span
# 20 h 36 min, as established senders' do (Svix: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; Stripe: 3 days), so a
# receiver down for a slow deploy, an outage or a night still gets every event. The sweep runs every minute: each
# retry is made up to a minute after its wait.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
)
MAX_ATTEMPTS = 1 + len(RETRY_DELAYS)
# An attempt claims its webhook until its time limit has passed and a minute more: a second task for it (the sweep's,
# a broker's redelivery) meanwhile finds it not due and leaves it, and an attempt whose worker died before it wrote
# the outcome is made again once that claim has run out.
CLAIM_MARGIN = timedelta(minutes=1)


class NotFailed(DomainError):
    code = "webhook_not_failed"
    default_detail = "Only a failed webhook is sent again (a pending one is still being tried, a sent one arrived)."


class Purged(DomainError):
    code = "webhook_purged"
    default_detail = "Deleted meanwhile: finished webhooks are kept RELAY_WEBHOOK_RETENTION_DAYS after their event."


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
    now = timezone.now()
    webhook = WebhookDelivery.objects.create(
        id=event_id, merchant=merchant, delivery=delivery, type=type, body=body, created_at=now, next_attempt_at=now
    )
    from deliveries.tasks import send_webhook

    enqueue_on_commit(send_webhook, str(webhook.pk))
    return webhook


def attempt_due_webhook(webhook_id) -> None:
    """One attempt at a pending webhook whose attempt is due, its outcome written: sent, or the next retry's time,
    or failed for good. At least once (receivers dedupe on the body's `id`); a webhook already sent is not sent
    again, and one not due (another task's attempt under way, a retry not yet due) is left alone.

    No row lock is held across the HTTP call (on SQLite that would stop every other writer meanwhile): the attempt
    claims the webhook first, by moving its `next_attempt_at` past the call's time limit where it still holds the
    value read, so of two tasks that read the same due webhook only one calls."""
    webhook = WebhookDelivery.objects.select_related("merchant").filter(pk=webhook_id).first()
    now = timezone.now()
    if webhook is None or webhook.status != WebhookDelivery.Status.PENDING or webhook.next_attempt_at > now:
        return
    pending = WebhookDelivery.objects.filter(pk=webhook.pk, status=WebhookDelivery.Status.PENDING)
    claim = timedelta(seconds=settings.RELAY_WEBHOOK_TIMEOUT_S) + CLAIM_MARGIN
    if not pending.filter(next_attempt_at=webhook.next_attempt_at).update(next_attempt_at=now + claim):
        return
    attempts = webhook.attempts + 1
    try:
        post_webhook(webhook)
    except Exception as exc:
        # A refused URL (a private address, say) stays refused: no point retrying it.
        final = attempts >= MAX_ATTEMPTS or isinstance(exc, outbound.Refused)
        pending.update(
            attempts=attempts,
            last_error=str(exc)[:300],
            status=WebhookDelivery.Status.FAILED if final else WebhookDelivery.Status.PENDING,
            next_attempt_at=None if final else timezone.now() + RETRY_DELAYS[attempts - 1],
        )
        return
    pending.update(attempts=attempts, status=WebhookDelivery.Status.SENT, sent_at=timezone.now(), next_attempt_at=None)


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


def resend_failed_webhook(webhook_id, *, actor: Actor) -> WebhookDelivery:
    """Ops send a failed webhook again (its receiver is back): the same event (`id`, body), due at once and retried
    on the same schedule as a new one. Audited with the attempts and the last error it had."""
    with atomic_action():
        webhook = WebhookDelivery.objects.select_for_update().filter(pk=webhook_id).first()
        if webhook is None:  # the daily purge took it since the page was read
            raise Purged()
        if webhook.status != WebhookDelivery.Status.FAILED:
            raise NotFailed()
        record_event(
            "webhook.resent",
            actor=actor,
            subject=webhook,
            from_state=webhook.status,
            to_state=WebhookDelivery.Status.PENDING,
            payload={"attempts": webhook.attempts, "last_error": webhook.last_error},
        )
        webhook.status = WebhookDelivery.Status.PENDING
        webhook.attempts = 0
        webhook.next_attempt_at = timezone.now()
        webhook.save(update_fields=["status", "attempts", "next_attempt_at"])
        from deliveries.tasks import send_webhook

        enqueue_on_commit(send_webhook, str(webhook.pk))
    return webhook


def purge_old_webhooks() -> int:
    """Delete the webhooks created over RELAY_WEBHOOK_RETENTION ago that are finished (sent, or failed every
    attempt), in short batches (the daily beat job). A pending one, retries still to come, is kept however old: it
    would be lost unsent. Returns how many were deleted."""
    finished = (WebhookDelivery.Status.SENT, WebhookDelivery.Status.FAILED)
    old = WebhookDelivery.objects.filter(created_at__lt=timezone.now() - settings.RELAY_WEBHOOK_RETENTION)
    return delete_in_batches(old.filter(status__in=finished))
