from django.db import migrations


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="Push zone pressure to ops", defaults={"task": "deliveries.tasks.push_zone_pressure", "interval": interval}
    )
    PeriodicTask.objects.update_or_create(
        name="Send unsent webhooks", defaults={"task": "deliveries.tasks.send_unsent_webhooks", "interval": interval}
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=["Push zone pressure to ops", "Send unsent webhooks"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("deliveries", "0002_beat_schedules")]
    operations = [migrations.RunPython(create, remove)]
