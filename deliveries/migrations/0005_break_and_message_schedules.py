"""Two more beat schedules (editable in the admin): breaks flagged when they pass the zone's limit, and driver
stream messages purged once `resume` no longer needs them."""

from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("Flag breaks over the limit", "deliveries.tasks.flag_long_breaks", 60),
    ("Purge driver messages", "deliveries.tasks.purge_driver_messages", 3600),
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
    dependencies = [("deliveries", "0004_escalation_status_fsm")]
    operations = [migrations.RunPython(create, remove)]
