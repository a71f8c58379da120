"""Beat schedules are django-celery-beat rows (editable in the admin) that data migrations create."""

from django.db import migrations


def interval_schedules(schedules: list[tuple[str, str, int]]) -> migrations.RunPython:
    """A migration operation creating `(name, task, every seconds)` schedules (an interval edited in the admin is
    replaced only if the migration runs again); reversed, it removes them."""

    def create(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        for name, task, every in schedules:
            interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
            PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval})

    def remove(apps, schema_editor):
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        PeriodicTask.objects.filter(name__in=[name for name, _, _ in schedules]).delete()

    return migrations.RunPython(create, remove)
