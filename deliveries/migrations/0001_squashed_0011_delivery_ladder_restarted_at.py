"""Merchants, deliveries, offers, webhooks, escalations, tracking and costs, with the beat schedules of the sweeps:
deliveries 0001-0011 squashed.

A database migrated with those eleven (all recorded in django_migrations) sees this one as applied. The schedules are
created as 0002-0009 left them: 0007's rename of the pressure push to the zone snapshots is folded into the list."""

import deliveries.models
import django.db.models.deletion
import django.utils.timezone
import django_fsm
import uuid
from django.conf import settings
from django.db import migrations, models

from core.schedules import interval_schedules

# The sweeps of dispatch, offers, drivers, escalation and tracking as django-celery-beat schedules (editable in the
# admin). Each is a safety net or a clock: the actions do the work on events too.
SCHEDULES = [
    # (name, task, every seconds)
    ("Expire overdue offers", "deliveries.tasks.expire_overdue_offers", 5),
    ("Dispatch waiting deliveries", "deliveries.tasks.dispatch_waiting_deliveries", 5),
    ("Escalation ladder", "deliveries.tasks.run_escalation_ladder", 15),
    ("Mark stale drivers offline", "deliveries.tasks.mark_stale_drivers", 15),
    ("Flush driver positions", "deliveries.tasks.flush_driver_positions", 5),
    ("Purge idempotency records", "deliveries.tasks.purge_idempotency_records", 3600),
    # The minute's zone snapshots push `zone.pressure` themselves (they replaced a plain pressure push).
    ("Take zone snapshots (pressure, surge, hints)", "deliveries.tasks.take_zone_snapshots", 60),
    ("Send unsent webhooks", "deliveries.tasks.send_unsent_webhooks", 60),
    # Breaks flagged when they pass the zone's limit; driver stream messages purged once `resume` no longer needs them.
    ("Flag breaks over the limit", "deliveries.tasks.flag_long_breaks", 60),
    ("Purge driver messages", "deliveries.tasks.purge_driver_messages", 3600),
    # Customer tracking: ETAs refreshed from pings at most every 15 s, breadcrumbs written in batches, raw
    # breadcrumbs purged daily after their retention.
    ("Refresh ETAs from pings", "deliveries.tasks.refresh_etas", 15),
    ("Flush breadcrumbs", "deliveries.tasks.flush_breadcrumbs", 10),
    ("Purge old breadcrumbs", "deliveries.tasks.purge_old_breadcrumbs", 86400),
]


class Migration(migrations.Migration):

    replaces = [
        ('deliveries', '0001_initial'),
        ('deliveries', '0002_beat_schedules'),
        ('deliveries', '0003_more_schedules'),
        ('deliveries', '0004_escalation_status_fsm'),
        ('deliveries', '0005_break_and_message_schedules'),
        ('deliveries', '0006_escalation_reason_no_candidate'),
        ('deliveries', '0007_zone_snapshot_schedule'),
        ('deliveries', '0008_tracking_eta_breadcrumbs'),
        ('deliveries', '0009_tracking_schedules'),
        ('deliveries', '0010_delivery_cost'),
        ('deliveries', '0011_delivery_ladder_restarted_at'),
    ]

    initial = True

    dependencies = [
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('drivers', '0001_squashed_0002_driver_message_sent_at_idx'),
        ('zones', '0002_squashed_0002_zone_balancing'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Merchant',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('webhook_url', models.URLField(blank=True)),
                ('webhook_secret', models.CharField(default=deliveries.models.new_secret, max_length=64)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='merchant', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='Delivery',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('external_id', models.CharField(max_length=100)),
                ('request_fingerprint', models.CharField(editable=False, max_length=64)),
                ('status', django_fsm.FSMField(choices=[('pending', 'Pending'), ('offered', 'Offered'), ('assigned', 'Assigned'), ('picked_up', 'Picked Up'), ('delivered', 'Delivered'), ('cancelled', 'Cancelled'), ('failed', 'Failed')], default='pending', max_length=50, protected=True)),
                ('pickup_name', models.CharField(max_length=200)),
                ('pickup_address', models.CharField(max_length=300)),
                ('pickup_lat', models.FloatField()),
                ('pickup_lng', models.FloatField()),
                ('pickup_phone', models.CharField(blank=True, max_length=32)),
                ('dropoff_name', models.CharField(max_length=200)),
                ('dropoff_address', models.CharField(max_length=300)),
                ('dropoff_lat', models.FloatField()),
                ('dropoff_lng', models.FloatField()),
                ('dropoff_phone', models.CharField(blank=True, max_length=32)),
                ('ready_at', models.DateTimeField(blank=True, null=True)),
                ('promised_by', models.DateTimeField(blank=True, null=True)),
                ('value', models.DecimalField(blank=True, decimal_places=2, max_digits=10, null=True)),
                ('notes', models.TextField(blank=True)),
                ('fee', models.DecimalField(decimal_places=2, max_digits=8)),
                ('distance_km', models.FloatField(help_text='Straight-line pickup to dropoff')),
                ('tracking_token', models.CharField(default=deliveries.models._tracking_token, editable=False, max_length=64, unique=True)),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('status_changed_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('assigned_at', models.DateTimeField(blank=True, null=True)),
                ('picked_up_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('outcome_reason', models.CharField(blank=True, help_text='Why it was cancelled or failed', max_length=300)),
                ('proof', models.JSONField(blank=True, null=True)),
                ('reassignment_count', models.PositiveSmallIntegerField(default=0)),
                ('unassigned_since', models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True)),
                ('escalation_level', models.PositiveSmallIntegerField(default=0)),
                ('dispatch_not_before', models.DateTimeField(blank=True, null=True)),
                ('dispatch_outcome', models.CharField(blank=True, max_length=16)),
                ('driver', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='drivers.driver')),
                ('zone', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='zones.zone')),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='deliveries', to='deliveries.merchant')),
                ('eta_dropoff', models.DateTimeField(blank=True, null=True)),
                ('eta_error_s', models.IntegerField(blank=True, null=True)),
                ('eta_pickup', models.DateTimeField(blank=True, null=True)),
                ('eta_predicted_at_assignment', models.DateTimeField(blank=True, null=True)),
                ('eta_window_end', models.DateTimeField(blank=True, null=True)),
                ('eta_window_end_at_assignment', models.DateTimeField(blank=True, null=True)),
                ('eta_window_start', models.DateTimeField(blank=True, null=True)),
                ('eta_window_start_at_assignment', models.DateTimeField(blank=True, null=True)),
                ('ladder_restarted_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'verbose_name_plural': 'deliveries',
                'ordering': ['-created_at'],
                'indexes': [models.Index(fields=['status', 'created_at'], name='delivery_status_created_idx'), models.Index(fields=['zone', 'finished_at'], name='delivery_zone_finished_idx')],
                'constraints': [models.UniqueConstraint(fields=('merchant', 'external_id'), name='delivery_external_id_per_merchant')],
            },
            bases=(django_fsm.FSMModelMixin, models.Model),
        ),
        migrations.CreateModel(
            name='Offer',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('kind', models.CharField(choices=[('dispatch', 'Dispatch'), ('direct', 'Direct'), ('forced', 'Forced')], default='dispatch', max_length=16)),
                ('status', django_fsm.FSMField(choices=[('pending', 'Pending'), ('accepted', 'Accepted'), ('declined', 'Declined'), ('expired', 'Expired'), ('withdrawn', 'Withdrawn')], default='pending', max_length=50, protected=True)),
                ('sent_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField(db_index=True)),
                ('responded_at', models.DateTimeField(blank=True, null=True)),
                ('decline_reason', models.CharField(blank=True, choices=[('too_far', 'Too Far'), ('busy', 'Busy'), ('vehicle', 'Vehicle'), ('other', 'Other')], max_length=16)),
                ('decline_note', models.CharField(blank=True, max_length=300)),
                ('withdraw_reason', models.CharField(blank=True, max_length=32)),
                ('release_reason', models.CharField(blank=True, max_length=300)),
                ('distance_km', models.FloatField()),
                ('eta_to_pickup_s', models.PositiveIntegerField()),
                ('estimated_pay', models.DecimalField(decimal_places=2, max_digits=8)),
                ('surge_multiplier', models.DecimalField(decimal_places=2, default=1, max_digits=4)),
                ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='offers', to='deliveries.delivery')),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='offers', to='drivers.driver')),
            ],
            options={
                'ordering': ['-sent_at'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'pending')), fields=('delivery',), name='one_pending_offer_per_delivery'), models.UniqueConstraint(condition=models.Q(('status', 'pending')), fields=('driver',), name='one_pending_offer_per_driver')],
            },
            bases=(django_fsm.FSMModelMixin, models.Model),
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('type', models.CharField(max_length=64)),
                ('body', models.TextField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('sent', 'Sent'), ('failed', 'Failed')], default='pending', max_length=16)),
                ('attempts', models.PositiveSmallIntegerField(default=0)),
                ('last_error', models.CharField(blank=True, max_length=300)),
                ('sent_at', models.DateTimeField(blank=True, null=True)),
                ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhooks', to='deliveries.delivery')),
                ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhooks', to='deliveries.merchant')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Escalation',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('reason', models.CharField(choices=[('unassigned', 'Unassigned too long'), ('offer_rounds', 'Offer rounds without acceptance'), ('reassignments', 'Too many reassignments'), ('not_moving', 'Driver not moving toward pickup'), ('overdue', 'Past its dropoff ETA'), ('driver_stale', 'Driver went stale holding it'), ('driver_offline', 'Driver went offline holding it'), ('no_candidate', 'No driver in reach')], max_length=32)),
                ('level', models.PositiveSmallIntegerField(choices=[(2, 'Alert'), (3, 'Critical')], default=2)),
                ('status', django_fsm.FSMField(choices=[('open', 'Open'), ('acknowledged', 'Acknowledged'), ('resolved', 'Resolved')], default='open', max_length=16, protected=True)),
                ('detail', models.CharField(blank=True, max_length=300)),
                ('opened_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                ('resolved_at', models.DateTimeField(blank=True, null=True)),
                ('resolution_note', models.TextField(blank=True)),
                ('acknowledged_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='escalations', to='deliveries.delivery')),
                ('resolved_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-level', 'opened_at'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('status', 'resolved'), _negated=True), fields=('delivery',), name='one_unresolved_escalation_per_delivery')],
            },
        ),
        migrations.CreateModel(
            name='Breadcrumb',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('lat', models.FloatField()),
                ('lng', models.FloatField()),
                ('recorded_at', models.DateTimeField(db_index=True)),
                ('delivery', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='breadcrumbs', to='deliveries.delivery')),
                ('driver', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='drivers.driver')),
            ],
            options={
                'ordering': ['recorded_at'],
                'indexes': [models.Index(fields=['delivery', 'recorded_at'], name='breadcrumb_delivery_idx')],
            },
        ),
        migrations.CreateModel(
            name='TravelSpeed',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('vehicle', models.CharField(max_length=16)),
                ('hour_of_week', models.PositiveSmallIntegerField(help_text="0 = Monday 00:00–01:00 in the zone's time zone")),
                ('trips', models.PositiveIntegerField(default=0)),
                ('mean_kmh', models.FloatField(default=0)),
                ('zone', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='travel_speeds', to='zones.zone')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('zone', 'vehicle', 'hour_of_week'), name='one_travel_speed_per_cell')],
            },
        ),
        migrations.CreateModel(
            name='DeliveryCost',
            fields=[
                ('delivery', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='cost', serialize=False, to='deliveries.delivery')),
                ('outcome', models.CharField(choices=[('pending', 'Pending'), ('offered', 'Offered'), ('assigned', 'Assigned'), ('picked_up', 'Picked Up'), ('delivered', 'Delivered'), ('cancelled', 'Cancelled'), ('failed', 'Failed')], max_length=16)),
                ('ended_at', models.DateTimeField(db_index=True)),
                ('distance_km', models.FloatField(help_text='Ridden: to pickup, then pickup to dropoff once picked up')),
                ('minutes', models.FloatField(help_text='From assignment to the end')),
                ('waiting_minutes', models.FloatField(help_text='At pickup, arrived before the order was ready')),
                ('surge_multiplier', models.DecimalField(decimal_places=2, default=1, max_digits=4)),
                ('pay_base', models.DecimalField(decimal_places=2, max_digits=8)),
                ('pay_distance', models.DecimalField(decimal_places=2, max_digits=8)),
                ('pay_time', models.DecimalField(decimal_places=2, max_digits=8)),
                ('pay_surge', models.DecimalField(decimal_places=2, max_digits=8)),
                ('pay_waiting', models.DecimalField(decimal_places=2, max_digits=8)),
                ('driver_pay', models.DecimalField(decimal_places=2, max_digits=8)),
                ('fee', models.DecimalField(decimal_places=2, help_text='Charged to the merchant (not if cancelled)', max_digits=8)),
                ('margin', models.DecimalField(decimal_places=2, help_text='Fee minus driver pay', max_digits=8)),
                ('driver', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='drivers.driver')),
                ('zone', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='zones.zone')),
            ],
        ),
        interval_schedules(SCHEDULES),
    ]
