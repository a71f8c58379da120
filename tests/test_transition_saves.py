"""A transition saves only the fields it changes (`core.fsm.saving_changes`): after every action that runs one, the
row read back holds every value the action left on the object it returns, field by field."""

import pytest
from django.utils import timezone

from core.audit import Actor
from deliveries.models import Delivery, Offer
from deliveries.services import offers, progress, reassignment
from tests import factories

pytestmark = pytest.mark.django_db


def assert_saved(instance) -> None:
    stored = type(instance).objects.get(pk=instance.pk)
    for field in instance._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(instance, field.attname), field.name


def test_create_and_dispatch_save_the_offered_delivery(merchant, clock):
    factories.online_driver(*factories.east(0.5))
    delivery = factories.new_delivery(merchant)
    assert (delivery.status, delivery.dispatch_outcome) == ("offered", "offered")
    assert_saved(delivery)


def test_accept_saves_the_offer_and_the_assigned_delivery(merchant, clock):
    driver = factories.online_driver(*factories.east(0.5))
    offer = factories.pending_offer(factories.new_delivery(merchant))
    clock.shift(5)
    delivery = offers.accept_offer(offer.pk, actor=Actor.driver(driver))
    assert (delivery.status, delivery.driver_id, delivery.assigned_at) == ("assigned", driver.pk, timezone.now())
    assert delivery.unassigned_since is None and delivery.eta_predicted_at_assignment is not None
    assert_saved(delivery)
    offer.refresh_from_db()
    assert (offer.status, offer.responded_at) == ("accepted", timezone.now())


def test_decline_and_expiry_save_the_offer_and_pass_the_delivery_on(merchant, clock):
    first, second = factories.online_driver(*factories.east(0.3)), factories.online_driver(*factories.east(0.9))
    delivery = factories.new_delivery(merchant)
    declined = offers.decline_offer(
        factories.pending_offer(delivery).pk, actor=Actor.driver(first), reason="busy", note="lunch"
    )
    assert (declined.status, declined.decline_reason, declined.decline_note) == ("declined", "busy", "lunch")
    assert_saved(declined)
    expiring = factories.pending_offer(delivery)
    assert expiring.driver == second
    clock.shift(31)
    assert offers.expire_offer(expiring.pk)
    expiring.refresh_from_db()
    assert expiring.status == "expired"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.dispatch_outcome) == ("pending", "no_candidate")


def test_pick_up_and_deliver_save_their_times_proof_and_eta_error(merchant, clock):
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.assigned_delivery(merchant, driver)
    clock.shift(300)
    picked_up = progress.pick_up_delivery(delivery.pk, actor=Actor.driver(driver))
    assert picked_up.picked_up_at == timezone.now()
    assert_saved(picked_up)
    clock.shift(600)
    delivered = progress.deliver_delivery(delivery.pk, actor=Actor.driver(driver), proof={"photo": "p.jpg"})
    assert (delivered.finished_at, delivered.proof) == (timezone.now(), {"photo": "p.jpg"})
    assert delivered.eta_error_s is not None
    assert_saved(delivered)


def test_fail_saves_its_reason(merchant, clock):
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.assigned_delivery(merchant, driver)
    progress.pick_up_delivery(delivery.pk, actor=Actor.driver(driver))
    failed = progress.fail_delivery(delivery.pk, actor=Actor.driver(driver), reason="nobody home")
    assert (failed.status, failed.outcome_reason) == ("failed", "nobody home")
    assert_saved(failed)


def test_cancel_withdraws_the_offer_and_saves_both(merchant, clock):
    factories.online_driver(*factories.east(0.5))
    delivery = factories.new_delivery(merchant)
    offer = factories.pending_offer(delivery)
    cancelled = progress.cancel_delivery(delivery.pk, actor=Actor.merchant(merchant), reason="changed my mind")
    assert (cancelled.status, cancelled.outcome_reason) == ("cancelled", "changed my mind")
    assert_saved(cancelled)
    offer.refresh_from_db()
    assert (offer.status, offer.withdraw_reason) == ("withdrawn", "cancelled")


def test_hand_back_and_forced_assignment_save_the_delivery(merchant, ops_user, clock):
    first, second = factories.online_driver(*factories.east(0.5)), factories.online_driver(*factories.east(2.0))
    delivery = factories.assigned_delivery(merchant, first)
    reassignment.reassign_after_driver_loss(
        delivery.pk, driver_id=first.pk, actor=Actor.ops(ops_user), reason="flat tyre"
    )
    delivery.refresh_from_db()
    assert (delivery.reassignment_count, delivery.assigned_at) == (1, None)
    assert delivery.unassigned_since == timezone.now()
    reassigned = reassignment.reassign_as_ops_ask(
        delivery.pk, driver_id=second.pk, force=True, actor=Actor.ops(ops_user)
    )
    assert (reassigned.status, reassigned.driver_id) == ("assigned", second.pk)
    assert_saved(reassigned)
    forced = Offer.objects.get(delivery=delivery, kind=Offer.Kind.FORCED)
    assert (forced.status, forced.responded_at) == ("accepted", timezone.now())
    assert Delivery.objects.get(pk=delivery.pk).reassignment_count == 1
