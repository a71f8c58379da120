from django.db import migrations

from core.schedules import interval_schedules


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0019_webhook_retention'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        interval_schedules([
            # (name, task, every seconds): rebalancing hints deleted daily after RELAY_ZONE_HINT_RETENTION.
            ("Purge old zone hints", "deliveries.tasks.purge_old_zone_hints", 86400),
        ]),
    ]
