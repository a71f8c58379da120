"""Two more beat schedules (editable in the admin): breaks flagged when they pass the zone's limit, and driver
stream messages purged once `resume` no longer needs them."""

from django.db import migrations

from core.schedules import interval_schedules

SCHEDULES = [
    # (name, task, every seconds)
    ("Flag breaks over the limit", "deliveries.tasks.flag_long_breaks", 60),
    ("Purge driver messages", "deliveries.tasks.purge_driver_messages", 3600),
]


class Migration(migrations.Migration):
    dependencies = [("deliveries", "0004_escalation_status_fsm")]
    operations = [interval_schedules(SCHEDULES)]
