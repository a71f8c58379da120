"""KPI rollups per zone-day and driver-day, and the nightly rollup's beat schedule: analytics 0001-0002 squashed.

A database migrated with those two (both recorded in django_migrations) sees this one as applied."""

import django.db.models.deletion
from django.db import migrations, models

# The nightly KPI rollup as a django-celery-beat schedule (editable in the admin): 02:30 UTC, when every zone's
# previous local day in Europe has ended.
ROLLUP_NAME = "Roll up KPIs (nightly)"


def create_rollup_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.update_or_create(
        name=ROLLUP_NAME, defaults={"task": "analytics.tasks.roll_up_kpis_task", "crontab": crontab, "interval": None}
    )


def remove_rollup_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=ROLLUP_NAME).delete()


class Migration(migrations.Migration):

    replaces = [
        ('analytics', '0001_kpi_rollups'),
        ('analytics', '0002_nightly_rollup_schedule'),
    ]

    initial = True

    dependencies = [
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('drivers', '0001_squashed_0002_driver_message_sent_at_idx'),
        ('zones', '0001_squashed_0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='DriverDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('facts', models.JSONField()),
                ('computed_at', models.DateTimeField(auto_now=True)),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='drivers.driver')),
            ],
            options={
                'ordering': ['-day', 'driver'],
                'constraints': [models.UniqueConstraint(fields=('driver', 'day'), name='driver_day_unique')],
            },
        ),
        migrations.CreateModel(
            name='ZoneDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('facts', models.JSONField()),
                ('computed_at', models.DateTimeField(auto_now=True)),
                ('zone', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='zones.zone')),
            ],
            options={
                'ordering': ['-day', 'zone'],
                'constraints': [models.UniqueConstraint(fields=('zone', 'day'), name='zone_day_unique')],
            },
        ),
        migrations.RunPython(create_rollup_schedule, remove_rollup_schedule),
    ]
