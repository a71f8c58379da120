"""The embedded mode's Celery beat runs the schedules stored in the database (django-celery-beat)."""

import pytest
from django_celery_beat.schedulers import DatabaseScheduler

from core.embedded import embedded_beat


@pytest.mark.django_db
def test_embedded_beat_uses_the_database_schedules():
    beat = embedded_beat()
    scheduler = beat.service.get_scheduler(lazy=True)
    assert isinstance(scheduler, DatabaseScheduler)
    names = set(scheduler.all_as_schedule())
    assert {"Expire overdue offers", "Escalation ladder", "Mark stale drivers offline"} <= names
