"""The actions' hot writes built without Model.save (core/rows.py): the row read back is what the ORM would have
written, a row that is gone is an error, and a model something listens to is still saved by the ORM."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import signals
from django.utils import timezone

from core import rows
from core.models import AuditEvent
from deliveries.models import Delivery, Offer
from drivers.models import Driver
from tests import factories
from zones.models import Zone
from zones.selectors import zone_cache

pytestmark = pytest.mark.django_db


def test_an_update_writes_the_named_columns_as_the_orm_prepares_them(merchant):
    delivery = factories.new_delivery(merchant)
    driver = factories.DriverFactory()
    delivery.driver_id = driver.pk  # a foreign key by its attname
    delivery.eta_dropoff = timezone.now() + timedelta(minutes=12, microseconds=7)
    delivery.fee = Decimal("4.5")
    delivery.notes = "not named: stays as stored"
    rows.update_fields(delivery, ["driver_id", "eta_dropoff", "fee"])
    stored = Delivery.objects.get(pk=delivery.pk)
    assert (stored.driver_id, stored.eta_dropoff, stored.fee) == (driver.pk, delivery.eta_dropoff, Decimal("4.50"))
    assert stored.notes == ""


def test_an_update_of_a_row_that_is_gone_is_an_error_as_with_the_orm(zones):
    driver = factories.DriverFactory()
    Driver.objects.filter(pk=driver.pk).delete()
    driver.missed_offers_in_row = 2
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        rows.update_fields(driver, ["missed_offers_in_row"])


def test_nothing_named_is_no_statement(zones, django_assert_num_queries):
    driver = factories.DriverFactory()
    with django_assert_num_queries(0):
        rows.update_fields(driver, [])


def test_a_model_with_save_receivers_is_still_saved_by_the_orm(zones):
    centro = Zone.objects.get(code="centro")
    zone_cache.zones()  # loaded: a Zone save's receiver empties it
    assert zone_cache._loaded_at != float("-inf")
    centro.offer_timeout_s = 45
    rows.update_fields(centro, ["offer_timeout_s"])
    assert Zone.objects.get(pk=centro.pk).offer_timeout_s == 45
    assert zone_cache._loaded_at == float("-inf")


def _events(n: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            type="test.event",
            actor_kind="system",
            subject_kind="delivery",
            subject_id=uuid.uuid4(),
            payload={"n": i, "text": 'a "quoted" value', "nested": [1, {"x": None}]},
        )
        for i in range(n)
    ]


def test_events_are_inserted_with_their_numbers_read_back_in_order():
    events = _events(3)
    rows.insert_numbered(AuditEvent, events)
    assert all(event.pk is not None and not event._state.adding for event in events)
    stored = AuditEvent.objects.in_bulk([event.pk for event in events])
    assert [stored[event.pk].payload["n"] for event in events] == [0, 1, 2]
    assert stored[events[0].pk].payload == events[0].payload
    assert stored[events[0].pk].occurred_at == events[0].occurred_at


def test_more_events_than_one_statement_takes_go_in_several(monkeypatch):
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    events = _events(5)
    rows.insert_numbered(AuditEvent, events)
    stored = AuditEvent.objects.in_bulk([event.pk for event in events])
    assert [stored[event.pk].payload["n"] for event in events] == [0, 1, 2, 3, 4]


def test_only_a_model_whose_key_the_database_numbers_can_be_inserted_this_way():
    with pytest.raises(TypeError, match="not numbered"):
        rows.insert_numbered(Driver, [Driver(name="x")])


def _pending_offer(delivery: Delivery, driver: Driver) -> Offer:
    now = timezone.now()
    return Offer(
        delivery=delivery,
        driver=driver,
        sent_at=now,
        expires_at=now + timedelta(seconds=30),
        distance_km=1.25,
        eta_to_pickup_s=240,
        estimated_pay=Decimal("3.10"),
        surge_multiplier=Decimal("1.2"),
    )


def test_a_new_row_goes_in_as_the_orm_writes_it(merchant):
    offer = _pending_offer(factories.new_delivery(merchant), factories.DriverFactory())
    assert rows.insert_unless_taken(offer) is True
    assert not offer._state.adding
    stored = Offer.objects.get(pk=offer.pk)
    assert (stored.status, stored.kind, stored.driver_id, stored.expires_at, stored.estimated_pay) == (
        "pending",
        Offer.Kind.DISPATCH,
        offer.driver_id,
        offer.expires_at,
        Decimal("3.10"),
    )


def test_a_row_a_unique_constraint_refuses_is_left_out_and_the_transaction_goes_on(merchant):
    driver = factories.DriverFactory()
    first = _pending_offer(factories.new_delivery(merchant, "order-1"), driver)
    second = _pending_offer(factories.new_delivery(merchant, "order-2"), driver)  # one pending offer per driver
    with transaction.atomic():
        assert rows.insert_unless_taken(first) is True
        assert rows.insert_unless_taken(second) is False
        assert Offer.objects.filter(driver=driver).count() == 1  # no savepoint needed: the transaction is usable
    assert list(Offer.objects.filter(driver=driver).values_list("pk", flat=True)) == [first.pk]
    assert second._state.adding


def test_a_row_another_constraint_refuses_is_an_error_as_with_the_orm(merchant):
    offer = _pending_offer(factories.new_delivery(merchant), factories.DriverFactory())
    offer.expires_at = None  # a NOT NULL column: not a conflict
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.insert_unless_taken(offer)


def test_a_row_of_a_model_with_save_receivers_goes_through_the_orm_and_its_receivers(merchant):
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    driver = factories.DriverFactory()
    first = _pending_offer(factories.new_delivery(merchant, "order-1"), driver)
    second = _pending_offer(factories.new_delivery(merchant, "order-2"), driver)
    signals.post_save.connect(receiver, sender=Offer)
    try:
        with transaction.atomic():
            assert rows.insert_unless_taken(first) is True
            assert rows.insert_unless_taken(second) is False
            assert Offer.objects.filter(driver=driver).count() == 1
    finally:
        signals.post_save.disconnect(receiver, sender=Offer)
    assert heard == [(first.pk, True)]
