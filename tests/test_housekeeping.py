"""Scheduled housekeeping: driver stream messages are kept as long as `resume` needs them, then purged."""

from datetime import timedelta

import pytest
from django.db import transaction
from django_celery_beat.models import PeriodicTask

from config.celery import app
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


@pytest.mark.parametrize("task", ["deliveries.tasks.flag_long_breaks", "deliveries.tasks.purge_driver_messages"])
def test_the_sweeps_are_beat_schedules(task):
    schedule = PeriodicTask.objects.get(task=task)
    assert schedule.enabled and schedule.interval is not None
    assert task in app.tasks
