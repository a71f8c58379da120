from django.db import migrations

from core.schedules import interval_schedules


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0001_squashed_0002_nightly_rollup_schedule'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        interval_schedules([
            # (name, task, every seconds): zone snapshots of rolled-up days deleted daily after their retention.
            ("Purge old zone snapshots", "analytics.tasks.purge_old_zone_snapshots", 86400),
        ]),
    ]
