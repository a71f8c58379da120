"""Retention of the tables that grow every minute or with every order: each is purged daily by a beat job, in short
batches, of rows past their retention (a setting), and keeps what is still in use or still shown."""

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app
from core import purge
from deliveries.models import WebhookDelivery
from tests import factories
from zones.models import ZoneHint

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def _webhook(delivery, status: str, **fields) -> WebhookDelivery:
    """A webhook created now, in `status`, as the sender leaves it."""
    finished = {"next_attempt_at": None, "attempts": 1, "sent_at": timezone.now()} if status == "sent" else {}
    finished |= {"next_attempt_at": None, "attempts": 7, "last_error": "HTTP 500"} if status == "failed" else {}
    pending = {"next_attempt_at": timezone.now()} if status == "pending" else {}
    return WebhookDelivery.objects.create(
        merchant=delivery.merchant, delivery=delivery, type="delivery.status", body="{}", status=status,
        **finished | pending | fields,
    )  # fmt: skip


class FailingDelete:
    """A database that fails the `nth` DELETE statement (a lost connection, a statement timeout)."""

    def __init__(self, nth: int):
        self.nth, self.deletes = nth, 0

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith("DELETE"):
            self.deletes += 1
            if self.deletes == self.nth:
                raise DatabaseError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


@pytest.mark.parametrize(
    "task",
    ["deliveries.tasks.purge_old_webhooks", "deliveries.tasks.purge_old_zone_hints"],
)
def test_each_retention_is_a_daily_beat_schedule(task):
    schedule = PeriodicTask.objects.get(task=task)
    assert schedule.enabled
    assert (schedule.interval.every, schedule.interval.period) == (DAY, "seconds")
    assert task in app.tasks


def test_finished_webhooks_are_kept_90_days_then_purged(merchant, clock):
    from deliveries.tasks import purge_old_webhooks

    delivery = factories.new_delivery(merchant)
    sent, failed = _webhook(delivery, "sent"), _webhook(delivery, "failed")
    clock.shift(DAY)
    newer = _webhook(delivery, "sent")
    clock.shift(89 * DAY)
    assert purge_old_webhooks() == 0  # exactly 90 days old: still kept
    clock.shift(1)
    assert purge_old_webhooks() == 2
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [newer.pk]
    assert not WebhookDelivery.objects.filter(pk__in=[sent.pk, failed.pk]).exists()


def test_a_pending_webhook_is_never_purged_however_old(merchant, clock):
    """Not yet tried, or retrying after failed attempts (a failed one ops sent again is pending too): deleting it
    would lose the event unsent."""
    from deliveries.tasks import purge_old_webhooks

    delivery = factories.new_delivery(merchant)
    waiting = _webhook(delivery, "pending")
    retrying = _webhook(delivery, "pending", attempts=3, last_error="HTTP 503")
    clock.shift(365 * DAY)
    assert purge_old_webhooks() == 0
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {waiting.pk, retrying.pk}


def test_the_webhook_retention_is_a_setting(merchant, clock, settings):
    from deliveries.tasks import purge_old_webhooks

    settings.RELAY_WEBHOOK_RETENTION = timedelta(days=30)
    _webhook(factories.new_delivery(merchant), "sent")
    clock.shift(30 * DAY + 1)
    assert purge_old_webhooks() == 1


@pytest.mark.django_db(transaction=True)
def test_a_purge_that_fails_part_way_keeps_its_batches_and_the_next_run_finishes(merchant, clock, monkeypatch):
    """Each batch is its own short transaction: a failure loses nothing still kept, and what it had not reached
    is deleted by the next run."""
    from deliveries.tasks import purge_old_webhooks

    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    delivery = factories.new_delivery(merchant)
    for _ in range(5):
        _webhook(delivery, "sent")
    kept = _webhook(delivery, "pending")
    clock.shift(91 * DAY)
    with connection.execute_wrapper(FailingDelete(2)), pytest.raises(DatabaseError):
        purge_old_webhooks()
    assert WebhookDelivery.objects.filter(status="sent").count() == 3  # the first batch's deletion stands
    assert purge_old_webhooks() == 3
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [kept.pk]


def _hint(zones, driver) -> ZoneHint:
    """A hint sent now to `driver` in Norte toward a critical Centro."""
    return ZoneHint.objects.create(
        driver=driver, zone=zones["centro"], from_zone=zones["norte"], sent_at=timezone.now(),
        surge_multiplier="1.50", message="High demand in Centro, +50%",
    )  # fmt: skip


def test_zone_hints_are_kept_90_days_then_purged(zones, clock):
    from deliveries.tasks import purge_old_zone_hints

    driver = factories.DriverFactory()
    _hint(zones, driver)
    clock.shift(DAY)
    newer = _hint(zones, driver)
    clock.shift(89 * DAY)
    assert purge_old_zone_hints() == 0  # exactly 90 days old: still kept
    clock.shift(1)
    assert purge_old_zone_hints() == 1
    assert list(ZoneHint.objects.values_list("pk", flat=True)) == [newer.pk]


def test_the_zone_hint_retention_is_a_setting(zones, clock, settings):
    from deliveries.tasks import purge_old_zone_hints

    settings.RELAY_ZONE_HINT_RETENTION = timedelta(days=7)
    _hint(zones, factories.DriverFactory())
    clock.shift(7 * DAY + 1)
    assert purge_old_zone_hints() == 1
