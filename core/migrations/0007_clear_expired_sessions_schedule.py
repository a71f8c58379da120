from django.db import migrations

from core.schedules import interval_schedules


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0006_api_token"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        interval_schedules([
            # (name, task, every seconds)
            ("Clear expired console sessions", "core.tasks.clear_expired_sessions", 86400),
        ]),
    ]
