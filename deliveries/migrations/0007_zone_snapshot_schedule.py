from django.db import migrations

OLD = ("Push zone pressure to ops", "deliveries.tasks.push_zone_pressure")
NEW = ("Take zone snapshots (pressure, surge, hints)", "deliveries.tasks.take_zone_snapshots")


def _rename(apps, frm, to):
    """The minute's zone snapshots replace the plain pressure push (they push `zone.pressure` themselves); an
    interval edited in the admin is kept."""
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    task = PeriodicTask.objects.filter(name=frm[0]).first()
    if task is None:
        interval, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
        task = PeriodicTask(interval=interval)
    task.name, task.task = to
    task.save()


def forwards(apps, schema_editor):
    _rename(apps, OLD, NEW)


def backwards(apps, schema_editor):
    _rename(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [("deliveries", "0006_escalation_reason_no_candidate"), ("zones", "0002_zone_balancing")]
    operations = [migrations.RunPython(forwards, backwards)]
