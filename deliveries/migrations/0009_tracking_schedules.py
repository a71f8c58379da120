"""Beat schedules of customer tracking (editable in the admin): ETAs refreshed from pings at most every 15 s,
breadcrumbs written in batches, raw breadcrumbs purged daily after their retention."""

from django.db import migrations

from core.schedules import interval_schedules

SCHEDULES = [
    # (name, task, every seconds)
    ("Refresh ETAs from pings", "deliveries.tasks.refresh_etas", 15),
    ("Flush breadcrumbs", "deliveries.tasks.flush_breadcrumbs", 10),
    ("Purge old breadcrumbs", "deliveries.tasks.purge_old_breadcrumbs", 86400),
]


class Migration(migrations.Migration):
    dependencies = [("deliveries", "0008_tracking_eta_breadcrumbs")]
    operations = [interval_schedules(SCHEDULES)]
