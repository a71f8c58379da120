"""Zone hints (a driver sent toward a critical zone) and zone snapshots: the models zones 0002 added (its new zone
fields are in 0001_squashed_0001_initial). A database with 0002 recorded in django_migrations sees this one as
applied."""

import django.db.models.deletion
import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    replaces = [('zones', '0002_zone_balancing')]

    dependencies = [
        ('drivers', '0001_squashed_0002_driver_message_sent_at_idx'),
        ('zones', '0001_squashed_0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ZoneHint',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('sent_at', models.DateTimeField()),
                ('surge_multiplier', models.DecimalField(decimal_places=2, max_digits=4)),
                ('message', models.CharField(max_length=200)),
                ('outcome', models.CharField(choices=[('pending', 'Pending'), ('entered', 'Entered'), ('not_entered', 'Not Entered')], default='pending', max_length=12)),
                ('entered_at', models.DateTimeField(blank=True, null=True)),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='zone_hints', to='drivers.driver')),
                ('from_zone', models.ForeignKey(help_text='where the driver was', on_delete=django.db.models.deletion.PROTECT, related_name='+', to='zones.zone')),
                ('zone', models.ForeignKey(help_text='the critical zone', on_delete=django.db.models.deletion.PROTECT, related_name='hints', to='zones.zone')),
            ],
            options={
                'ordering': ['-sent_at'],
                'indexes': [models.Index(fields=['driver', '-sent_at'], name='zone_hint_driver_idx'), models.Index(fields=['outcome', 'sent_at'], name='zone_hint_outcome_idx')],
            },
        ),
        migrations.CreateModel(
            name='ZoneSnapshot',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('taken_at', models.DateTimeField()),
                ('demand_open', models.PositiveIntegerField(help_text='open deliveries (pending, offered) in the zone')),
                ('demand_recent', models.PositiveIntegerField(help_text='deliveries created in the zone in the last 15 min')),
                ('supply_available', models.PositiveIntegerField(help_text='available drivers present in the zone')),
                ('supply_busy', models.PositiveIntegerField()),
                ('supply_on_break', models.PositiveIntegerField()),
                ('pressure', models.FloatField(help_text='demand_open / max(supply_available, 1)')),
                ('band', models.CharField(choices=[('normal', 'Normal'), ('busy', 'Busy'), ('critical', 'Critical')], max_length=8)),
                ('surge_multiplier', models.DecimalField(decimal_places=2, max_digits=4)),
                ('zone', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='snapshots', to='zones.zone')),
            ],
            options={
                'ordering': ['-taken_at', 'zone'],
                'indexes': [models.Index(fields=['zone', '-taken_at'], name='zone_snapshot_latest_idx')],
            },
        ),
    ]
