"""Real Celery workers (the in-process ones of embedded mode; on CI their broker is Redis) run the sweeps that
catch what a lost task missed, and keep webhooks apart from dispatch."""

import threading
from datetime import timedelta

import pytest
from django.db import OperationalError, close_old_connections
from django.utils import timezone

from config.celery import app
from core import embedded
from core.embedded import EmbeddedCelery
from deliveries.models import Offer, OfferStatus, WebhookDelivery
from deliveries.tasks import expire_overdue_offers
from tests import factories
from tests.polling import eventually

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tasks_to_broker(settings):
    app.conf.task_always_eager = False
    settings.CELERY_TASK_ALWAYS_EAGER = False  # the webhook worker's app reads the settings as they are
    yield
    app.conf.task_always_eager = True


@pytest.fixture
def worker(tasks_to_broker):
    celery = EmbeddedCelery()
    celery.start(beat=False)
    yield
    celery.stop()


def overdue_offer() -> Offer:
    """A pending offer whose deadline passed while the task scheduled for it never ran (say the worker holding it
    died)."""
    delivery = factories.new_delivery(factories.MerchantFactory())
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return offer


def expires(offer: Offer) -> bool:
    def expired() -> bool:
        close_old_connections()
        try:
            return Offer.objects.get(pk=offer.pk).status == OfferStatus.EXPIRED
        except OperationalError:  # the SQLite test database (shared cache) says "table is locked" while it is written
            return False

    return bool(eventually(expired, timeout_s=20))


def test_the_worker_expires_an_offer_whose_own_expiry_task_was_lost(zones, worker):
    driver = factories.online_driver(*factories.CENTRO)
    offer = overdue_offer()

    expire_overdue_offers.delay()

    assert expires(offer)
    driver.refresh_from_db()
    assert driver.missed_offers_in_row == 1


def test_a_task_queued_before_the_workers_start_runs_while_the_webhook_worker_is_still_starting(
    zones, tasks_to_broker, settings, monkeypatch
):
    # Both workers live in one process; on a loaded machine the webhook one can start well after the default one
    # has taken its first task (a sweep beat queued, or one left over from before a restart).
    factories.online_driver(*factories.CENTRO)
    offer = overdue_offer()
    expire_overdue_offers.delay()
    webhook_worker_may_start = threading.Event()
    build_worker = embedded._worker

    def webhook_worker_starting_late(celery_app, *, queue, hostname):
        built = build_worker(celery_app, queue=queue, hostname=hostname)
        if queue == settings.WEBHOOK_QUEUE:
            start = built.start

            def late_start():
                webhook_worker_may_start.wait(timeout=30)
                start()

            built.start = late_start
        return built

    monkeypatch.setattr(embedded, "_worker", webhook_worker_starting_late)
    celery = EmbeddedCelery()
    celery.start(beat=False)
    try:
        assert expires(offer)
    finally:
        webhook_worker_may_start.set()
        celery.stop()


# PostgreSQL: three connections write and poll at once here, and the SQLite test database (in memory, shared
# cache) answers "table is locked" at once instead of waiting as the embedded mode's SQLite file does.
@pytest.mark.postgres
def test_a_stalled_merchant_does_not_hold_up_offer_expiry(zones, worker, settings, receivers):
    settings.RELAY_WEBHOOK_TIMEOUT_S = 60
    stalled = receivers(hang=True)
    factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory(webhook_url=stalled.url)
    delivery = factories.new_delivery(merchant)  # queues its `delivery.pending` webhook
    assert stalled.arrived.wait(20), "the webhook worker never called the merchant"
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    expire_overdue_offers.delay()

    assert expires(offer)
    webhook = WebhookDelivery.objects.filter(delivery=delivery).order_by("created_at").first()
    assert webhook.type == "delivery.pending"
    assert (webhook.status, webhook.attempts) == ("pending", 0)  # its call is still waiting on the merchant
    stalled.release.set()

    def sent() -> bool:
        close_old_connections()
        return WebhookDelivery.objects.get(pk=webhook.pk).status == WebhookDelivery.Status.SENT

    assert eventually(sent, timeout_s=20)
