"""Celery tasks: each takes ids, loads fresh rows through an action, and is safe to run twice."""

from datetime import timedelta

from celery import shared_task
from django.db.models import F, Q
from django.utils import timezone

from core import outbound
from core.idempotency import purge_expired_idempotency_records
from deliveries import webhooks
from deliveries.models import Offer, WebhookDelivery
from deliveries.services import availability, balancing, dispatch, ladder, offers, tracking
from drivers import locations, notifications


@shared_task(acks_late=True)
def dispatch_delivery_task(delivery_id: str) -> None:
    dispatch.dispatch(delivery_id)


@shared_task(acks_late=True)
def expire_offer_task(offer_id: str) -> None:
    """Scheduled for the offer's deadline. The beat sweep below catches any that a lost task missed."""
    offers.expire_offer(offer_id)


@shared_task
def expire_overdue_offers() -> int:
    overdue = Offer.objects.pending().filter(expires_at__lte=timezone.now())
    return sum(offers.expire_offer(offer_id) for offer_id in overdue.values_list("pk", flat=True))


@shared_task
def dispatch_waiting_deliveries() -> int:
    return ladder.dispatch_waiting()


@shared_task
def run_escalation_ladder() -> int:
    return ladder.run_ladder()


@shared_task
def mark_stale_drivers() -> int:
    return availability.mark_stale_drivers()


@shared_task
def flag_long_breaks() -> int:
    return availability.flag_long_breaks()


@shared_task
def take_zone_snapshots() -> int:
    """Every minute: zone snapshots, rebalancing hints, `zone.pressure` to the ops board. Returns hints sent."""
    return len(balancing.take_zone_snapshots().hints)


@shared_task
def flush_driver_positions() -> int:
    return locations.flush_positions()


@shared_task
def refresh_etas() -> int:
    return tracking.refresh_etas()


@shared_task
def flush_breadcrumbs() -> int:
    return tracking.flush_breadcrumbs()


@shared_task
def purge_old_breadcrumbs() -> int:
    return tracking.purge_old_breadcrumbs()


@shared_task
def purge_idempotency_records() -> int:
    return purge_expired_idempotency_records()


@shared_task
def purge_driver_messages() -> int:
    return notifications.purge_old_messages()


@shared_task
def send_unsent_webhooks() -> int:
    """Safety net for webhooks whose task was never queued or was lost: never attempted after a minute, or a
    minute past the retry a failed attempt scheduled (Celery drops a retry it cannot publish; a broker restarted
    without its data forgets the queued ones)."""
    late = timezone.now() - timedelta(minutes=1)
    stale = WebhookDelivery.objects.filter(
        Q(attempts=0, created_at__lte=late) | Q(attempts__gt=0, next_attempt_at__lte=late),
        status=WebhookDelivery.Status.PENDING,
    )
    ids = list(stale.values_list("pk", flat=True)[:500])
    for webhook_id in ids:
        send_webhook.delay(str(webhook_id))
    return len(ids)


@shared_task(bind=True, max_retries=webhooks.MAX_RETRIES, acks_late=True)
def send_webhook(self, webhook_id: str) -> None:
    """At-least-once (receivers dedupe on the body's `id`); a webhook already sent is not sent again.

    No row lock is held across the HTTP call: on SQLite that would stop every other writer meanwhile.
    """
    webhook = WebhookDelivery.objects.select_related("merchant").filter(pk=webhook_id).first()
    if webhook is None or webhook.status != WebhookDelivery.Status.PENDING:
        return
    pending = WebhookDelivery.objects.filter(pk=webhook.pk, status=WebhookDelivery.Status.PENDING)
    try:
        webhooks.post_webhook(webhook)
    except Exception as exc:
        attempts = webhook.attempts + 1
        # A refused URL (a private address, say) stays refused: no point retrying it.
        final = attempts >= webhooks.MAX_ATTEMPTS or isinstance(exc, outbound.Refused)
        # Backoff 2, 4, 8, 16, 32, 64 s before the 6 retries.
        countdown = 2**attempts
        pending.update(
            attempts=F("attempts") + 1,
            last_error=str(exc)[:300],
            status=WebhookDelivery.Status.FAILED if final else WebhookDelivery.Status.PENDING,
            next_attempt_at=None if final else timezone.now() + timedelta(seconds=countdown),
        )
        if not final:
            raise self.retry(countdown=countdown) from exc
        return
    pending.update(attempts=F("attempts") + 1, status=WebhookDelivery.Status.SENT, sent_at=timezone.now())
