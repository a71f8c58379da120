"""Drivers, their shifts, breaks and message stream: drivers 0001-0002 squashed.

A database migrated with those two (both recorded in django_migrations) sees this one as applied."""

import django.db.models.deletion
import django.utils.timezone
import django_fsm
import uuid
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    replaces = [
        ('drivers', '0001_initial'),
        ('drivers', '0002_driver_message_sent_at_idx'),
    ]

    initial = True

    dependencies = [
        ('zones', '0001_squashed_0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Driver',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('phone', models.CharField(blank=True, max_length=32)),
                ('vehicle', models.CharField(choices=[('bicycle', 'Bicycle'), ('scooter', 'Scooter'), ('car', 'Car')], default='bicycle', max_length=16)),
                ('capacity', models.PositiveSmallIntegerField(default=1)),
                ('state', django_fsm.FSMField(choices=[('offline', 'Offline'), ('available', 'Available'), ('on_break', 'On Break'), ('busy', 'Busy')], db_index=True, default='offline', max_length=50, protected=True)),
                ('state_changed_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('missed_offers_in_row', models.PositiveSmallIntegerField(default=0)),
                ('last_lat', models.FloatField(blank=True, null=True)),
                ('last_lng', models.FloatField(blank=True, null=True)),
                ('last_seen_at', models.DateTimeField(blank=True, null=True)),
                ('message_seq', models.PositiveBigIntegerField(default=0)),
                ('current_zone', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='present_drivers', to='zones.zone')),
                ('home_zone', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='home_drivers', to='zones.zone')),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='driver', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['name'],
                'indexes': [models.Index(fields=['last_lat', 'last_lng'], name='driver_position_idx')],
            },
            bases=(django_fsm.FSMModelMixin, models.Model),
        ),
        migrations.CreateModel(
            name='DriverMessage',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('seq', models.PositiveBigIntegerField()),
                ('type', models.CharField(max_length=32)),
                ('sent_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('data', models.JSONField(default=dict)),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='messages', to='drivers.driver')),
            ],
            options={
                'ordering': ['driver', 'seq'],
                'constraints': [models.UniqueConstraint(fields=('driver', 'seq'), name='driver_message_seq_unique')],
                'indexes': [models.Index(fields=['sent_at'], name='driver_message_sent_at_idx')],
            },
        ),
        migrations.CreateModel(
            name='Shift',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('planned_start', models.DateTimeField(blank=True, null=True)),
                ('planned_end', models.DateTimeField(blank=True, null=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='shifts', to='drivers.driver')),
            ],
            options={
                'ordering': ['-started_at'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('ended_at__isnull', True), ('started_at__isnull', False)), fields=('driver',), name='one_open_shift_per_driver')],
            },
        ),
        migrations.CreateModel(
            name='Break',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('over_limit', models.BooleanField(default=False)),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='breaks', to='drivers.driver')),
                ('shift', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='breaks', to='drivers.shift')),
            ],
            options={
                'ordering': ['-started_at'],
            },
        ),
    ]
