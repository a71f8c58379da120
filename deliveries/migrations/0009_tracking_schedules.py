"""Beat schedules of customer tracking (editable in the admin): ETAs refreshed from pings at most every 15 s,
breadcrumbs written in batches, raw breadcrumbs purged daily after their retention."""

from django.db import migrations

SCHEDULES = [
    # (name, task, every seconds)
    ("Refresh ETAs from pings", "deliveries.tasks.refresh_etas", 15),
    ("Flush breadcrumbs", "deliveries.tasks.flush_breadcrumbs", 10),
    ("Purge old breadcrumbs", "deliveries.tasks.purge_old_breadcrumbs", 86400),
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
    dependencies = [("deliveries", "0008_tracking_eta_breadcrumbs")]
    operations = [migrations.RunPython(create, remove)]
