"""Zones, with the balancing settings that zones 0002 added to them.

Zones and drivers point at each other (a driver's home zone, a zone hint's driver), so zones keeps a second migration,
after drivers, for the models 0002 added. Each of the two replaces one old migration, so that a database at the
previous head (0001 and 0002 recorded in django_migrations) sees both as applied."""

import django.core.validators
import zones.models
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    replaces = [('zones', '0001_initial')]

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name='Zone',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.SlugField(max_length=32, unique=True)),
                ('name', models.CharField(max_length=100)),
                ('polygon', models.JSONField(help_text='GeoJSON Polygon or MultiPolygon, lon/lat')),
                ('time_zone', models.CharField(default='UTC', max_length=64, validators=[zones.models.validate_time_zone])),
                ('active', models.BooleanField(default=True)),
                ('min_lat', models.FloatField(default=0, editable=False)),
                ('max_lat', models.FloatField(default=0, editable=False)),
                ('min_lng', models.FloatField(default=0, editable=False)),
                ('max_lng', models.FloatField(default=0, editable=False)),
                ('offer_timeout_s', models.PositiveIntegerField(default=30, validators=[django.core.validators.MinValueValidator(5)])),
                ('search_radius_km', models.FloatField(default=5.0, validators=[django.core.validators.MinValueValidator(0.1)])),
                ('missed_offers_before_offline', models.PositiveIntegerField(default=3)),
                ('escalation_warn_s', models.PositiveIntegerField(default=120)),
                ('escalation_alert_s', models.PositiveIntegerField(default=300)),
                ('escalation_critical_s', models.PositiveIntegerField(default=600)),
                ('escalation_max_offer_rounds', models.PositiveIntegerField(default=5)),
                ('escalation_radius_factor', models.FloatField(default=1.5)),
                ('not_moving_alert_s', models.PositiveIntegerField(default=600)),
                ('dropoff_overdue_alert_s', models.PositiveIntegerField(default=900)),
                ('max_reassignments', models.PositiveIntegerField(default=3)),
                ('stale_after_s', models.PositiveIntegerField(default=90)),
                ('break_limit_s', models.PositiveIntegerField(default=1800)),
                ('fee_base', models.DecimalField(decimal_places=2, default=Decimal('3.50'), max_digits=8)),
                ('fee_per_km', models.DecimalField(decimal_places=2, default=Decimal('0.80'), max_digits=8)),
                ('pay_base', models.DecimalField(decimal_places=2, default=Decimal('2.50'), max_digits=8)),
                ('pay_per_km', models.DecimalField(decimal_places=2, default=Decimal('0.60'), max_digits=8)),
                ('pay_per_minute', models.DecimalField(decimal_places=2, default=Decimal('0.15'), max_digits=8)),
                ('pay_waiting_per_minute', models.DecimalField(decimal_places=2, default=Decimal('0.10'), max_digits=8)),
                ('neighbours', models.ManyToManyField(blank=True, to='zones.zone')),
                ('busy_pressure', models.FloatField(default=1.0, validators=[django.core.validators.MinValueValidator(0.1)])),
                ('critical_pressure', models.FloatField(default=2.0, validators=[django.core.validators.MinValueValidator(0.1)])),
                ('surge_busy', models.DecimalField(decimal_places=2, default=Decimal('1.20'), max_digits=4, validators=[django.core.validators.MinValueValidator(Decimal('1.00'))])),
                ('surge_critical', models.DecimalField(decimal_places=2, default=Decimal('1.50'), max_digits=4, validators=[django.core.validators.MinValueValidator(Decimal('1.00'))])),
                ('surge_normal', models.DecimalField(decimal_places=2, default=Decimal('1.00'), max_digits=4, validators=[django.core.validators.MinValueValidator(Decimal('1.00'))])),
            ],
            options={
                'ordering': ['code'],
            },
        ),
    ]
