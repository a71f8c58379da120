"""The sweeps of dispatch, offers, drivers and escalation as django-celery-beat schedules (editable in
the admin). Each is a safety net or a clock: the actions do the work on events too."""

from django.db import migrations

from core.schedules import interval_schedules

SCHEDULES = [
    # (name, task, every seconds)
    ("Expire overdue offers", "deliveries.tasks.expire_overdue_offers", 5),
    ("Dispatch waiting deliveries", "deliveries.tasks.dispatch_waiting_deliveries", 5),
    ("Escalation ladder", "deliveries.tasks.run_escalation_ladder", 15),
    ("Mark stale drivers offline", "deliveries.tasks.mark_stale_drivers", 15),
    ("Flush driver positions", "deliveries.tasks.flush_driver_positions", 5),
    ("Purge idempotency records", "deliveries.tasks.purge_idempotency_records", 3600),
]


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [interval_schedules(SCHEDULES)]
