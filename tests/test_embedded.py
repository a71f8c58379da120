"""The embedded mode's Celery beat runs the schedules stored in the database (django-celery-beat)."""

import logging

import pytest
from django_celery_beat.schedulers import DatabaseScheduler
from kombu import Connection

from core.embedded import embedded_beat


@pytest.mark.django_db
def test_embedded_beat_uses_the_database_schedules():
    beat = embedded_beat()
    scheduler = beat.service.get_scheduler(lazy=True)
    assert isinstance(scheduler, DatabaseScheduler)
    names = set(scheduler.all_as_schedule())
    assert {"Expire overdue offers", "Escalation ladder", "Mark stale drivers offline"} <= names


def test_the_broker_url_gives_kombu_nothing_to_warn_about(settings, caplog):
    """The embedded mode's broker was `memory://`: kombu logged "No hostname was supplied. Reverting to default
    'localhost'" on the terminal of `make demo` (seed_history) and five times in demo.log."""
    with caplog.at_level(logging.WARNING, logger="kombu"):
        Connection(settings.CELERY_BROKER_URL).info()
    assert [record.getMessage() for record in caplog.records if record.name.startswith("kombu")] == []
