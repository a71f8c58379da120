"""Races against PostgreSQL with real threads, each on its own connection (as Django's select_for_update
tests do)."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Escalation, EscalationLevel, Offer, OfferStatus
from deliveries.services import offers
from deliveries.services.availability import take_offline
from deliveries.services.common import lock_delivery
from deliveries.services.escalations import raise_escalation_locked
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


def test_ops_on_escalations_racing_a_driver_on_the_delivery_never_deadlock(zones):
    """Ops acknowledge or resolve an escalation while its delivery's driver accepts, then releases, it: both
    sides lock the delivery first, so neither waits for the other in a circle (no deadlock, no 500)."""
    driver = factories.online_driver(*factories.CENTRO)
    driver_api, ops_api = api_client_for(driver.user), api_client_for(factories.OpsUserFactory())
    merchant = factories.MerchantFactory()

    def open_escalation(delivery, reason) -> str:
        with transaction.atomic():
            delivery = lock_delivery(delivery.pk)
            return str(raise_escalation_locked(delivery, level=EscalationLevel.ALERT, reason=reason).pk)

    def ops_on(escalation_id, round_):
        if round_ % 2:
            return ops_api.post(f"/api/v1/ops/escalations/{escalation_id}/resolve", {"note": "seen"}, format="json")
        return ops_api.post(f"/api/v1/ops/escalations/{escalation_id}/acknowledge")

    def status(response_or_error):  # a deadlock is raised out of the test client
        return getattr(response_or_error, "status_code", repr(response_or_error))

    codes = Counter()
    for round_ in range(100):  # two races a round: 200
        factories.ping(driver, *factories.CENTRO)
        delivery = factories.new_delivery(merchant, f"race-{round_}")
        offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING, driver=driver)
        unassigned = open_escalation(delivery, Escalation.Reason.UNASSIGNED)
        accepted, ops = run_together(
            lambda o=offer: driver_api.post(f"/api/v1/offers/{o.pk}/accept"),
            lambda e=unassigned, r=round_: ops_on(e, r),
        )
        assert (status(accepted), status(ops) in (200, 409)) == (200, True), (accepted, ops)
        codes[ops.status_code] += 1

        not_moving = open_escalation(delivery, Escalation.Reason.NOT_MOVING)
        released, ops = run_together(
            lambda d=delivery: driver_api.post(f"/api/v1/deliveries/{d.pk}/release", {"reason": "flat"}, format="json"),
            lambda e=not_moving, r=round_: ops_on(e, r),
        )
        assert (status(released), status(ops) in (200, 409)) == (200, True), (released, ops)
        codes[ops.status_code] += 1
        cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="race done")
    assert sum(codes.values()) == 200
