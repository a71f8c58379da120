from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from zones import geometry


class Zone(models.Model):
    """A service area and its dispatch policy. Every number here is editable per zone in the admin."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    polygon = models.JSONField(help_text="GeoJSON Polygon or MultiPolygon, lon/lat")
    neighbours = models.ManyToManyField("self", blank=True, symmetrical=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    active = models.BooleanField(default=True)
    # Bounding box of the polygon, kept in sync on save, so a point lookup scans few polygons.
    min_lat = models.FloatField(editable=False, default=0)
    max_lat = models.FloatField(editable=False, default=0)
    min_lng = models.FloatField(editable=False, default=0)
    max_lng = models.FloatField(editable=False, default=0)

    # Offers (SPEC 2.1)
    offer_timeout_s = models.PositiveIntegerField(default=30, validators=[MinValueValidator(5)])
    search_radius_km = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    missed_offers_before_offline = models.PositiveIntegerField(default=3)
    # Escalation ladder (SPEC 2.3)
    escalation_warn_s = models.PositiveIntegerField(default=120)
    escalation_alert_s = models.PositiveIntegerField(default=300)
    escalation_critical_s = models.PositiveIntegerField(default=600)
    escalation_max_offer_rounds = models.PositiveIntegerField(default=5)
    escalation_radius_factor = models.FloatField(default=1.5)
    not_moving_alert_s = models.PositiveIntegerField(default=600)
    dropoff_overdue_alert_s = models.PositiveIntegerField(default=900)
    max_reassignments = models.PositiveIntegerField(default=3)
    # Drivers (SPEC 2.2)
    stale_after_s = models.PositiveIntegerField(default=90)
    break_limit_s = models.PositiveIntegerField(default=1800)
    # Money (SPEC 5)
    fee_base = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("3.50"))
    fee_per_km = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.80"))
    pay_base = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("2.50"))
    pay_per_km = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.60"))
    pay_per_minute = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.15"))
    pay_waiting_per_minute = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.10"))

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def save(self, *args, **kwargs):
        self.min_lat, self.max_lat, self.min_lng, self.max_lng = geometry.bbox(self.polygon)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        try:
            geometry.validate_geometry(self.polygon or {})
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValidationError({"polygon": str(exc)}) from exc

    def contains(self, lat: float, lng: float) -> bool:
        return geometry.contains(self.polygon, lat, lng)
