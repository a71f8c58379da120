"""Scheduled housekeeping: driver stream messages are kept as long as `resume` needs them, idempotency records
their 24 h (API.md), then each is purged in short batches; console sessions go once expired."""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app
from core import idempotency, purge
from core.models import IdempotencyRecord
from drivers.models import DriverMessage
from drivers.notifications import notify_driver
from tests import factories

pytestmark = pytest.mark.django_db


def message(driver, n: int) -> None:
    with transaction.atomic():
        notify_driver(driver.pk, "test.message", {"n": n})


def test_driver_messages_older_than_a_day_are_purged_and_newer_ones_kept(zones, clock):
    from deliveries.tasks import purge_driver_messages

    driver = factories.DriverFactory()
    message(driver, 1)
    clock.shift(3600)
    message(driver, 2)
    clock.shift(23 * 3600)
    assert purge_driver_messages() == 0  # the first is exactly 24 h old: still kept
    clock.shift(1)
    assert purge_driver_messages() == 1
    assert [m.data["n"] for m in DriverMessage.objects.filter(driver=driver)] == [2]
    message(driver, 3)
    assert list(DriverMessage.objects.filter(driver=driver).values_list("seq", flat=True)) == [
        2,
        3,
    ]  # numbering goes on


def test_the_retention_is_a_setting(zones, clock, settings):
    from deliveries.tasks import purge_driver_messages

    settings.RELAY_DRIVER_MESSAGE_RETENTION = timedelta(hours=1)
    message(factories.DriverFactory(), 1)
    clock.shift(3601)
    assert purge_driver_messages() == 1


def test_an_idempotency_record_is_replayed_for_24_hours_then_purged(merchant_api, clock):
    from deliveries.tasks import purge_idempotency_records

    def post():
        payload = factories.delivery_payload("order-1")
        return merchant_api.post("/api/v1/deliveries", payload, format="json", HTTP_IDEMPOTENCY_KEY="key-1")

    assert post().status_code == 201
    clock.shift(24 * 3600 - 1)
    assert purge_idempotency_records() == 0
    assert post()["Idempotent-Replayed"] == "true"
    clock.shift(1)
    assert purge_idempotency_records() == 1
    assert not IdempotencyRecord.objects.exists()


def test_the_idempotency_purge_deletes_in_short_batches(db, clock, monkeypatch):
    """An hour's records (every POST with a key, location batches included) are not deleted in one statement: one
    long transaction holding their locks and writing their WAL at once."""
    monkeypatch.setattr(purge, "PURGE_BATCH", 2)
    for n in range(5):
        IdempotencyRecord.objects.create(
            caller="caller", key=f"key-{n}", fingerprint="body", expires_at=timezone.now() + idempotency.RETENTION
        )
    clock.shift(24 * 3600)
    with CaptureQueriesContext(connection) as queries:
        assert idempotency.purge_expired_idempotency_records() == 5
    assert len([query for query in queries if query["sql"].startswith("DELETE")]) == 3
    assert not IdempotencyRecord.objects.exists()


def test_expired_console_sessions_are_cleared(client, ops_user, clock):
    from core.tasks import clear_expired_sessions

    client.force_login(ops_user)
    clock.shift(24 * 3600 - 1)  # a console session lasts a day (SESSION_COOKIE_AGE, as an ops token)
    clear_expired_sessions()
    assert Session.objects.count() == 1
    clock.shift(2)
    clear_expired_sessions()
    assert Session.objects.count() == 0


@pytest.mark.parametrize(
    "task",
    [
        "deliveries.tasks.flag_long_breaks",
        "deliveries.tasks.purge_driver_messages",
        "deliveries.tasks.purge_idempotency_records",
        "deliveries.tasks.purge_old_breadcrumbs",
        "core.tasks.clear_expired_sessions",
    ],
)
def test_the_sweeps_are_beat_schedules(task):
    schedule = PeriodicTask.objects.get(task=task)
    assert schedule.enabled and schedule.interval is not None
    assert task in app.tasks
