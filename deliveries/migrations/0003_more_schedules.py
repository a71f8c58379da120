from django.db import migrations

from core.schedules import interval_schedules

SCHEDULES = [
    # (name, task, every seconds)
    ("Push zone pressure to ops", "deliveries.tasks.push_zone_pressure", 60),
    ("Send unsent webhooks", "deliveries.tasks.send_unsent_webhooks", 60),
]


class Migration(migrations.Migration):
    dependencies = [("deliveries", "0002_beat_schedules")]
    operations = [interval_schedules(SCHEDULES)]
