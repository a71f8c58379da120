"""The sweeps of dispatch, offers, drivers and escalation as django-celery-beat schedules (editable in
the admin). Each is a safety net or a clock: the actions do the work on events too."""

from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("Expire overdue offers", "deliveries.tasks.expire_overdue_offers", 5),
    ("Dispatch waiting deliveries", "deliveries.tasks.dispatch_waiting_deliveries", 5),
    ("Escalation ladder", "deliveries.tasks.run_escalation_ladder", 15),
    ("Mark stale drivers offline", "deliveries.tasks.mark_stale_drivers", 15),
    ("Flush driver positions", "deliveries.tasks.flush_driver_positions", 5),
    ("Purge idempotency records", "deliveries.tasks.purge_idempotency_records", 3600),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("deliveries", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
