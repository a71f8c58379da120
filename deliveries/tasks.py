"""Celery tasks: each takes ids, loads fresh rows through an action, and is safe to run twice."""

from celery import shared_task
from django.utils import timezone

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
def purge_old_zone_hints() -> int:
    return balancing.purge_old_zone_hints()


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
def purge_old_webhooks() -> int:
    return webhooks.purge_old_webhooks()


@shared_task
def send_unsent_webhooks() -> int:
    """Every minute: queue each pending webhook whose attempt is due (`deliveries.webhooks`): the retries after
    failed attempts, and any attempt whose task was never queued or was lost (a broker restarted without its data
    forgets the queued ones). The longest-waiting first, at most 500 a minute."""
    due = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=timezone.now())
    ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:500])
    for webhook_id in ids:
        send_webhook.delay(str(webhook_id))
    return len(ids)


@shared_task(acks_late=True)
def send_webhook(webhook_id: str) -> None:
    webhooks.attempt_due_webhook(webhook_id)
