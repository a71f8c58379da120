import uuid
import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from zones import geometry


class Band(models.TextChoices):
    """How stretched a zone is (SPEC 4.2): demand per available driver against the zone's thresholds."""

    NORMAL = "normal"
    BUSY = "busy"
    CRITICAL = "critical"


BANDS_UP = list(Band)  # declared in rising order
# A band steps down only once the pressure is this share below the threshold that raised it: a zone whose pressure
# hovers at a threshold (2 open deliveries for 2 drivers, then 3, then 2 again) would otherwise change its surge,
# what its drivers' offers pay, and whether its neighbours' drivers are sent hints, from one minute to the next.
BAND_STEP_DOWN_MARGIN = 0.2


def validate_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{name!r} is not an IANA time zone (e.g. Europe/Lisbon)") from exc


def _out_of_order(lower, higher, *, may_equal: bool = False) -> bool:
    """Whether `higher` is not above `lower` (with `may_equal`: is below it). Not when either is missing: the
    form has refused that field already."""
    if lower is None or higher is None:
        return False
    return higher < lower if may_equal else higher <= lower


class Zone(models.Model):
    """A service area and its dispatch policy. Every number here is editable per zone in the admin."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    polygon = models.JSONField(help_text="GeoJSON Polygon or MultiPolygon, lon/lat")
    neighbours = models.ManyToManyField("self", blank=True, symmetrical=True)
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    active = models.BooleanField(default=True)
    # Bounding box of the polygon, kept in sync on save, so a point lookup scans few polygons.
    min_lat = models.FloatField(editable=False, default=0)
    max_lat = models.FloatField(editable=False, default=0)
    min_lng = models.FloatField(editable=False, default=0)
    max_lng = models.FloatField(editable=False, default=0)

    # Offers (SPEC 2.1)
    offer_timeout_s = models.PositiveIntegerField(default=30, validators=[MinValueValidator(5)])
    search_radius_km = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    missed_offers_before_offline = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    # Escalation ladder (SPEC 2.3)
    escalation_warn_s = models.PositiveIntegerField(default=120)
    escalation_alert_s = models.PositiveIntegerField(default=300)
    escalation_critical_s = models.PositiveIntegerField(default=600)
    escalation_max_offer_rounds = models.PositiveIntegerField(default=5, validators=[MinValueValidator(1)])
    # Widens the search: under 1 the ladder's "widened" search would be narrower than the zone's own.
    escalation_radius_factor = models.FloatField(default=1.5, validators=[MinValueValidator(1.0)])
    not_moving_alert_s = models.PositiveIntegerField(default=600)
    dropoff_overdue_alert_s = models.PositiveIntegerField(default=900)
    max_reassignments = models.PositiveIntegerField(default=3)
    # Drivers (SPEC 2.2)
    # Apps ping every ~4 s: a limit under half a minute sets drivers offline over a few lost pings (at 0, every
    # online driver of the zone at each sweep).
    stale_after_s = models.PositiveIntegerField(default=90, validators=[MinValueValidator(30)])
    break_limit_s = models.PositiveIntegerField(default=1800)
    # Money (SPEC 5)
    fee_base = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("3.50"))
    fee_per_km = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.80"))
    pay_base = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("2.50"))
    pay_per_km = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.60"))
    pay_per_minute = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.15"))
    pay_waiting_per_minute = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.10"))
    # Balancing (SPEC 4.2): pressure = open deliveries per available driver; the band sets the surge on pay.
    busy_pressure = models.FloatField(default=1.0, validators=[MinValueValidator(0.1)])
    critical_pressure = models.FloatField(default=2.0, validators=[MinValueValidator(0.1)])
    surge_normal = models.DecimalField(
        max_digits=4, decimal_places=2, default=Decimal("1.00"), validators=[MinValueValidator(Decimal("1.00"))]
    )
    surge_busy = models.DecimalField(
        max_digits=4, decimal_places=2, default=Decimal("1.20"), validators=[MinValueValidator(Decimal("1.00"))]
    )
    surge_critical = models.DecimalField(
        max_digits=4, decimal_places=2, default=Decimal("1.50"), validators=[MinValueValidator(Decimal("1.00"))]
    )

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"

    def save(self, *args, **kwargs):
        self.min_lat, self.max_lat, self.min_lng, self.max_lng = geometry.bbox(self.polygon)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self._refuse_out_of_order()
        try:
            shape = geometry.validate_geometry(self.polygon or {})
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise ValidationError({"polygon": str(exc)}) from exc
        if self.active:
            self._refuse_overlap(shape)

    def _refuse_out_of_order(self) -> None:
        """Thresholds that climb: the busy band before the critical one, the ladder's steps one after the other (a
        warning after the alert would come once the delivery is already at level 2), and a surge that does not
        pay less as the zone gets busier."""
        errors = {}
        if _out_of_order(self.busy_pressure, self.critical_pressure):
            errors["critical_pressure"] = "The critical threshold must be above the busy one."
        if _out_of_order(self.escalation_warn_s, self.escalation_alert_s):
            errors["escalation_alert_s"] = "The alert must come after the warning."
        if _out_of_order(self.escalation_alert_s, self.escalation_critical_s):
            errors["escalation_critical_s"] = "The critical step must come after the alert."
        if _out_of_order(self.surge_normal, self.surge_busy, may_equal=True):
            errors["surge_busy"] = "The busy surge cannot be below the normal one."
        if _out_of_order(self.surge_busy, self.surge_critical, may_equal=True):
            errors["surge_critical"] = "The critical surge cannot be below the busy one."
        if errors:
            raise ValidationError(errors)

    def _refuse_overlap(self, shape) -> None:
        for other in Zone.objects.filter(active=True).exclude(pk=self.pk):
            share = geometry.overlap_share(shape, geometry.validate_geometry(other.polygon))
            if share > geometry.OVERLAP_TOLERANCE:
                raise ValidationError(
                    {
                        "polygon": f"overlaps the active zone {other.name} ({other.code}) over {share:.0%} of the "
                        f"smaller zone's area (at most {geometry.OVERLAP_TOLERANCE:.0%} is tolerated): a point "
                        "must belong to one zone only"
                    }
                )

    def contains(self, lat: float, lng: float) -> bool:
        return geometry.contains(self.polygon, lat, lng)

    def on_border(self, lat: float, lng: float) -> bool:
        return geometry.on_border(self.polygon, lat, lng)

    @cached_property
    def centre(self) -> tuple[float, float]:
        """(lat, lng) inside the zone, near its middle: where a rebalancing hint sends drivers."""
        return geometry.centre(self.polygon)

    def local_time(self, moment: datetime) -> datetime:
        return moment.astimezone(zoneinfo.ZoneInfo(self.time_zone))

    def band_for(self, *, open_deliveries: int, available_drivers: int, held: str = "") -> tuple[float, Band]:
        """Pressure and band. Open deliveries with nobody available is critical whatever the ratio. `held`: the band
        in force (the last snapshot's); a higher band than the pressure's holds until the pressure is
        BAND_STEP_DOWN_MARGIN below the threshold that raised it."""
        pressure = open_deliveries / max(available_drivers, 1)
        if pressure >= self.critical_pressure or (open_deliveries and not available_drivers):
            return pressure, Band.CRITICAL
        band = Band.BUSY if pressure >= self.busy_pressure else Band.NORMAL
        thresholds = {Band.BUSY: self.busy_pressure, Band.CRITICAL: self.critical_pressure}
        for higher in BANDS_UP[BANDS_UP.index(band) + 1 : BANDS_UP.index(held) + 1 if held in BANDS_UP else 0]:
            if pressure < thresholds[higher] * (1 - BAND_STEP_DOWN_MARGIN):
                break
            band = higher
        return pressure, band

    def surge_for(self, band: str) -> Decimal:
        return {Band.NORMAL: self.surge_normal, Band.BUSY: self.surge_busy, Band.CRITICAL: self.surge_critical}[band]


# A snapshot older than this no longer sets surge or widens dispatch: if the schedule stopped, pay and search go
# back to normal instead of keeping a band nobody is measuring.
SNAPSHOT_IN_FORCE_FOR = timedelta(minutes=5)


class ZoneSnapshotQuerySet(models.QuerySet):
    def in_force(self, *, now: datetime | None = None):
        """The latest snapshot of each zone, if it is recent enough to be in force (one query)."""
        now = now or timezone.now()
        latest = ZoneSnapshot.objects.filter(zone=models.OuterRef("zone")).order_by("-taken_at").values("pk")[:1]
        return self.filter(taken_at__gte=now - SNAPSHOT_IN_FORCE_FOR, pk=models.Subquery(latest))


class ZoneSnapshot(models.Model):
    """A zone's demand and supply, taken every minute (SPEC 4.2). The latest one sets the band in force (surge,
    dispatch across zones, hints); they are kept for analytics, a local day's until it is past
    RELAY_ZONE_SNAPSHOT_RETENTION and rolled up into its ZoneDay row (analytics/retention.py)."""

    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="snapshots")
    taken_at = models.DateTimeField()
    demand_open = models.PositiveIntegerField(help_text="open deliveries (pending, offered) in the zone")
    demand_recent = models.PositiveIntegerField(help_text="deliveries created in the zone in the last 15 min")
    supply_available = models.PositiveIntegerField(help_text="available drivers present in the zone")
    supply_busy = models.PositiveIntegerField()
    supply_on_break = models.PositiveIntegerField()
    pressure = models.FloatField(help_text="demand_open / max(supply_available, 1)")
    band = models.CharField(max_length=8, choices=Band.choices)
    surge_multiplier = models.DecimalField(max_digits=4, decimal_places=2)

    objects = ZoneSnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["-taken_at", "zone"]
        indexes = [models.Index(fields=["zone", "-taken_at"], name="zone_snapshot_latest_idx")]

    def __str__(self) -> str:
        return f"{self.zone_id} {timezone.localtime(self.taken_at):%Y-%m-%d %H:%M} {self.band}"


class HintOutcome(models.TextChoices):
    PENDING = "pending"  # sent less than HINT_EFFECT_WINDOW ago, driver not in the zone yet
    ENTERED = "entered"  # the driver entered the zone within the window
    NOT_ENTERED = "not_entered"


# A driver gets at most one hint per HINT_INTERVAL; a hint worked if the driver entered the zone within the window.
HINT_INTERVAL = timedelta(minutes=10)
HINT_EFFECT_WINDOW = timedelta(minutes=15)


class ZoneHint(models.Model):
    """A rebalancing hint (`zone.hint`) sent to an available driver in a calm zone next to a critical one, and
    whether it worked. Deleted RELAY_ZONE_HINT_RETENTION after it was sent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # By name: drivers import zones, not the other way round.
    driver = models.ForeignKey("drivers.Driver", on_delete=models.CASCADE, related_name="zone_hints")
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="hints", help_text="the critical zone")
    from_zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="+", help_text="where the driver was")
    sent_at = models.DateTimeField()
    surge_multiplier = models.DecimalField(max_digits=4, decimal_places=2)
    message = models.CharField(max_length=200)
    outcome = models.CharField(max_length=12, choices=HintOutcome.choices, default=HintOutcome.PENDING)
    entered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-sent_at"]
        indexes = [
            models.Index(fields=["driver", "-sent_at"], name="zone_hint_driver_idx"),
            models.Index(fields=["outcome", "sent_at"], name="zone_hint_outcome_idx"),
            models.Index(fields=["sent_at"], name="zone_hint_sent_at_idx"),  # the daily purge, the admin's list
        ]

    def __str__(self) -> str:
        return f"hint {self.zone_id} → {self.driver_id} {timezone.localtime(self.sent_at):%H:%M}"
