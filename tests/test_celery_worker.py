"""A real Celery worker (the in-process one of embedded mode; on CI its broker is Redis) runs the sweeps that
catch what a lost task missed."""

from datetime import timedelta

import pytest
from django.db import close_old_connections
from django.utils import timezone

from config.celery import app
from core.embedded import EmbeddedCelery
from deliveries.models import Offer, OfferStatus
from deliveries.tasks import expire_overdue_offers
from tests import factories
from tests.polling import eventually

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker():
    app.conf.task_always_eager = False
    celery = EmbeddedCelery()
    celery.start(beat=False)
    yield
    celery.stop()
    app.conf.task_always_eager = True


def test_the_worker_expires_an_offer_whose_own_expiry_task_was_lost(zones, worker):
    driver = factories.online_driver(*factories.CENTRO)
    delivery = factories.new_delivery(factories.MerchantFactory())
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    # The deadline passed and the task scheduled for it never ran (say the worker holding it died).
    Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    expire_overdue_offers.delay()

    def expired() -> bool:
        close_old_connections()
        return Offer.objects.get(pk=offer.pk).status == OfferStatus.EXPIRED

    assert eventually(expired, timeout_s=20)
    driver.refresh_from_db()
    assert driver.missed_offers_in_row == 1
