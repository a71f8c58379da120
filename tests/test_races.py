"""Races against PostgreSQL with real threads, each on its own connection (as Django's select_for_update
tests do)."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Offer, OfferStatus
from deliveries.services import offers
from deliveries.services.availability import take_offline
from deliveries.services.progress import cancel_delivery
from tests import factories
from tests.conftest import api_client_for

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_together(*targets):
    """Start every callable at the same instant on its own thread and connection; return their results."""
    barrier = threading.Barrier(len(targets))
    results = [None] * len(targets)

    def run(index, target):
        try:
            barrier.wait()
            results[index] = target()
        except Exception as exc:  # a refusal is a result too
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    close_old_connections()
    return results


def test_fifty_concurrent_accepts_of_one_offer_assign_once(zones):
    driver = factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory()
    delivery = factories.new_delivery(merchant, "contested")
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    api = api_client_for(driver.user)

    responses = run_together(*[lambda: api.post(f"/api/v1/offers/{offer.pk}/accept") for _ in range(50)])

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 49
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"offer_not_pending"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("assigned", driver)
    assert AuditEvent.objects.filter(delivery_id=delivery.pk, type="delivery.assigned").count() == 1


def test_accept_racing_expiry_never_ends_both_ways(zones):
    merchant = factories.MerchantFactory()
    outcomes = Counter()
    for round_ in range(200):
        driver = factories.online_driver(*factories.CENTRO)
        delivery = factories.new_delivery(merchant, f"race-{round_}")
        offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING, driver=driver)
        # Put the deadline a hair from now, so both sides run right at it.
        Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() + timedelta(milliseconds=round_ % 4))

        run_together(
            lambda o=offer, d=driver: offers.accept_offer(o.pk, actor=Actor.driver(d)),
            lambda o=offer: offers.expire_offer(o.pk),
        )

        offer.refresh_from_db()
        delivery.refresh_from_db()
        types = set(AuditEvent.objects.filter(subject_id=offer.pk).values_list("type", flat=True))
        assert not {"offer.accepted", "offer.expired"} <= types
        if offer.status == OfferStatus.ACCEPTED:
            assert (delivery.status, delivery.driver_id) == ("assigned", driver.pk)
        else:
            assert delivery.driver_id is None
        outcomes[offer.status] += 1
        # Clear the board for the next round: this driver and delivery take no further part.
        cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="race done")
        take_offline(driver.pk, actor=Actor.system("test"), reason="race done")
    assert sum(outcomes.values()) == 200
