import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone
from django_fsm import FSMField, transition

from core.fsm import FSMModelMixin
from core.permissions import role_conflict
from zones.models import Zone


class Vehicle(models.TextChoices):
    BICYCLE = "bicycle"
    SCOOTER = "scooter"
    CAR = "car"


class DriverState(models.TextChoices):
    OFFLINE = "offline"
    AVAILABLE = "available"
    ON_BREAK = "on_break"
    BUSY = "busy"


# Short names for the transition table below.
OFFLINE, AVAILABLE, ON_BREAK, BUSY = DriverState.OFFLINE, DriverState.AVAILABLE, DriverState.ON_BREAK, DriverState.BUSY


CANNOT_TAKE_A_BREAK = "A driver who is {state} cannot take a break."
NOT_ON_A_BREAK = "A driver who is {state} is not on a break."


def _requested(refused: str | None = None) -> dict:
    """`custom` of a transition the driver app may ask for, with the 409's words when the state does not allow it
    (`{state}` is the current one)."""
    return {"requested": True} | ({"refused": refused} if refused else {})


class Driver(FSMModelMixin, models.Model):
    """A driver's profile, availability state (SPEC 2.2) and last known position.

    The state field is written only by the transitions below, called from the actions in
    `deliveries/services/availability.py` (which also own what a change means for the driver's deliveries).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="driver")
    name = models.CharField(max_length=100)
    phone = models.CharField(max_length=32, blank=True)
    vehicle = models.CharField(max_length=16, choices=Vehicle.choices, default=Vehicle.BICYCLE)
    home_zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="home_drivers")
    # At least one: a driver who may carry nothing would be online, "busy" and never offered a job.
    capacity = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])

    state = FSMField(default=DriverState.OFFLINE, choices=DriverState.choices, protected=True, db_index=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    # Reset on every accept or decline; the driver is set offline when it reaches the zone's limit.
    missed_offers_in_row = models.PositiveSmallIntegerField(default=0)

    # Last known position, flushed from the location index in batches (never one write per ping).
    last_lat = models.FloatField(null=True, blank=True)
    last_lng = models.FloatField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    current_zone = models.ForeignKey(
        Zone, null=True, blank=True, on_delete=models.SET_NULL, related_name="present_drivers"
    )

    # Per-driver stream of websocket messages (the next `seq`); see DriverMessage.
    message_seq = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["last_lat", "last_lng"], name="driver_position_idx")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.user_id is not None and (conflict := role_conflict(self.user, "driver")):
            raise ValidationError({"user": conflict})

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name else ""

    # --- availability transitions: they only set fields; the actions around them save --------------------
    # `_requested` ones the driver app may ask for (POST /api/v1/driver/availability), with the 409's words when
    # the current state does not allow them; the others follow from the driver's deliveries.
    def _entered(self) -> None:
        self.state_changed_at = timezone.now()

    @transition(field=state, source=OFFLINE, target=AVAILABLE, custom=_requested("The driver is already {state}."))
    def go_online(self) -> None:
        self._entered()
        self.missed_offers_in_row = 0

    @transition(field=state, source=[AVAILABLE, ON_BREAK, BUSY], target=OFFLINE, custom=_requested())
    def go_offline(self) -> None:
        self._entered()

    @transition(field=state, source=AVAILABLE, target=ON_BREAK, custom=_requested(CANNOT_TAKE_A_BREAK))
    def start_break(self) -> None:
        self._entered()

    @transition(field=state, source=ON_BREAK, target=AVAILABLE, custom=_requested(NOT_ON_A_BREAK))
    def end_break(self) -> None:
        self._entered()

    @transition(field=state, source=AVAILABLE, target=BUSY)
    def fill_capacity(self) -> None:
        self._entered()

    @transition(field=state, source=BUSY, target=AVAILABLE)
    def free_capacity(self) -> None:
        self._entered()


class ShiftQuerySet(models.QuerySet):
    def open(self):
        """Started and not ended: at most one per driver (a partial unique index)."""
        return self.filter(started_at__isnull=False, ended_at__isnull=True)


class Shift(models.Model):
    """A stretch of work: started by going online, ended by going offline (planned times are optional)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    driver = models.ForeignKey(Driver, on_delete=models.PROTECT, related_name="shifts")
    planned_start = models.DateTimeField(null=True, blank=True)
    planned_end = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = ShiftQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["driver"],
                condition=models.Q(started_at__isnull=False, ended_at__isnull=True),
                name="one_open_shift_per_driver",
            )
        ]

    def __str__(self) -> str:
        if self.started_at is None:
            return f"{self.driver} (planned)"
        return f"{self.driver} {timezone.localtime(self.started_at):%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.planned_start and self.planned_end and self.planned_end <= self.planned_start:
            raise ValidationError({"planned_end": "The planned end must be after the planned start."})


class DriverMessage(models.Model):
    """Every websocket message sent to a driver, numbered per driver, so a reconnecting app can `resume`.

    The channel layer delivers at most once; this table is the source of truth, for
    RELAY_DRIVER_MESSAGE_RETENTION (24 h by default; purged hourly).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    driver = models.ForeignKey(Driver, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=32)
    sent_at = models.DateTimeField(default=timezone.now)
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["driver", "seq"]
        constraints = [models.UniqueConstraint(fields=["driver", "seq"], name="driver_message_seq_unique")]
        indexes = [models.Index(fields=["sent_at"], name="driver_message_sent_at_idx")]  # the hourly purge

    def __str__(self) -> str:
        return f"{self.driver_id} #{self.seq} {self.type}"

    def envelope(self) -> dict:
        return {
            "type": self.type,
            "id": str(self.id),
            "seq": self.seq,
            "sent_at": self.sent_at.isoformat(),
            "data": self.data,
        }


class Break(models.Model):
    """A break within a shift. One over the zone's limit is flagged to ops."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    driver = models.ForeignKey(Driver, on_delete=models.CASCADE, related_name="breaks")
    shift = models.ForeignKey(Shift, null=True, blank=True, on_delete=models.SET_NULL, related_name="breaks")
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    over_limit = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at"]
        # The minute's sweep for breaks running past the limit (`flag_long_breaks`), over a table that keeps every
        # break ever taken: it reads only the running ones not flagged yet.
        indexes = [
            models.Index(
                fields=["started_at"],
                condition=models.Q(ended_at__isnull=True, over_limit=False),
                name="break_running_unflagged_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.driver} break {timezone.localtime(self.started_at):%Y-%m-%d %H:%M}"

    @property
    def seconds(self) -> float | None:
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None
