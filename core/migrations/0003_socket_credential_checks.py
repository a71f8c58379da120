"""The beat schedule that closes sockets whose credentials stopped being valid, and an ops group made by an
earlier `create_ops` brought to what it grants now (no beat schedules, no deletes)."""

from django.db import migrations


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.update_or_create(
        name="Close sockets with revoked credentials",
        defaults={"task": "core.tasks.recheck_socket_credentials", "interval": interval},
    )
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name="ops"):
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="django_celery_beat"),
            *Permission.objects.filter(codename__startswith="delete_"),
        )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name="Close sockets with revoked credentials"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_audit_append_only_trigger"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create, remove)]
