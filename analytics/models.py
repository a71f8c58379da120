from django.db import models

from drivers.models import Driver
from zones.models import Zone


class DayFacts(models.Model):
    """The KPI facts of one subject (a zone, a driver) on one local day (the nightly rollup). `facts` holds
    additive figures (counts, sums, lists of durations) so any range of days sums exactly, percentiles included
    (`analytics.kpis.summarise_deliveries`)."""

    day = models.DateField()
    facts = models.JSONField()
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ZoneDay(DayFacts):
    """A zone's facts on one of its local days."""

    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["-day", "zone"]
        constraints = [models.UniqueConstraint(fields=["zone", "day"], name="zone_day_unique")]

    def __str__(self) -> str:
        return f"{self.zone_id} {self.day}"


class DriverDay(DayFacts):
    """A driver's facts on one local day of the driver's home zone."""

    driver = models.ForeignKey(Driver, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["-day", "driver"]
        constraints = [models.UniqueConstraint(fields=["driver", "day"], name="driver_day_unique")]

    def __str__(self) -> str:
        return f"{self.driver_id} {self.day}"
