import secrets
import uuid
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone
from django_fsm import FSMField, transition

from core.fsm import FSMModelMixin
from core.permissions import role_conflict
from drivers.models import Driver
from zones.models import Zone


def new_secret() -> str:
    return secrets.token_hex(32)


def _tracking_token() -> str:
    # 192 random bits (SPEC 4.1 asks for at least 128).
    return secrets.token_urlsafe(24)


class Merchant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="merchant")
    name = models.CharField(max_length=100)
    # What webhooks can be sent to (core.outbound): an ftp:// URL was saved, and every webhook then failed at once.
    webhook_url = models.URLField(blank=True, validators=[URLValidator(schemes=["http", "https"])])
    webhook_secret = models.CharField(max_length=64, default=new_secret)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.user_id is not None and (conflict := role_conflict(self.user, "merchant")):
            raise ValidationError({"user": conflict})


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    PICKED_UP = "picked_up"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.OFFERED)
ACTIVE_STATUSES = (DeliveryStatus.ASSIGNED, DeliveryStatus.PICKED_UP)


class DeliveryQuerySet(models.QuerySet):
    """The questions asked of deliveries everywhere, asked one way."""

    def open(self):
        """Needing a driver: pending or offered."""
        return self.filter(status__in=OPEN_STATUSES)

    def active(self):
        """With a driver: assigned or picked up."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def carried_by(self, driver):
        """What a driver (or driver id) holds right now."""
        return self.active().filter(driver=driver)


class EscalationLevel(models.IntegerChoices):
    """The escalation ladder's steps (SPEC 2.3). WARN widens the search; an Escalation for ops exists from ALERT;
    CRITICAL also tells the merchant. Raised only through `deliveries.services.escalations.raise_escalation_locked`."""

    NONE = 0
    WARN = 1
    ALERT = 2
    CRITICAL = 3


class Delivery(FSMModelMixin, models.Model):
    """A merchant's delivery through its lifecycle (SPEC 1). Only the transitions below write `status`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="deliveries")
    external_id = models.CharField(max_length=100)
    request_fingerprint = models.CharField(max_length=64, editable=False)
    status = FSMField(default=DeliveryStatus.PENDING, choices=DeliveryStatus.choices, protected=True)
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="deliveries")
    driver = models.ForeignKey(Driver, null=True, blank=True, on_delete=models.PROTECT, related_name="deliveries")

    pickup_name = models.CharField(max_length=200)
    pickup_address = models.CharField(max_length=300)
    pickup_lat = models.FloatField()
    pickup_lng = models.FloatField()
    pickup_phone = models.CharField(max_length=32, blank=True)
    dropoff_name = models.CharField(max_length=200)
    dropoff_address = models.CharField(max_length=300)
    dropoff_lat = models.FloatField()
    dropoff_lng = models.FloatField()
    dropoff_phone = models.CharField(max_length=32, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    promised_by = models.DateTimeField(null=True, blank=True)
    value = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    notes = models.TextField(blank=True)
    fee = models.DecimalField(max_digits=8, decimal_places=2)
    distance_km = models.FloatField(help_text="Straight-line pickup to dropoff")

    tracking_token = models.CharField(max_length=64, unique=True, default=_tracking_token, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    assigned_at = models.DateTimeField(null=True, blank=True)
    picked_up_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome_reason = models.CharField(max_length=300, blank=True, help_text="Why it was cancelled or failed")
    proof = models.JSONField(null=True, blank=True)
    reassignment_count = models.PositiveSmallIntegerField(default=0)
    # Since when it has needed a driver (creation, or the last hand-back); None while a driver has it.
    unassigned_since = models.DateTimeField(null=True, blank=True, default=timezone.now)
    # The highest EscalationLevel reached since the delivery was last assigned (SPEC 2.3).
    escalation_level = models.PositiveSmallIntegerField(default=EscalationLevel.NONE)
    # When ops last resolved an escalation of it while it still waited: the ladder counts again from here (a
    # resolution is "handled for now", never "stop watching": SPEC 2.3, no delivery may sit unnoticed).
    ladder_restarted_at = models.DateTimeField(null=True, blank=True)
    # Just-in-time hold for `ready_at`: not offered before this time.
    dispatch_not_before = models.DateTimeField(null=True, blank=True)
    # Outcome of the last dispatch attempt (offered, held, no_candidate): the audit trail records changes only.
    dispatch_outcome = models.CharField(max_length=16, blank=True)

    # The ETA customers and the merchant were last shown (deliveries/eta.py): replaced when it moves by more
    # than a minute, so every push is a change worth telling.
    eta_pickup = models.DateTimeField(null=True, blank=True)
    eta_dropoff = models.DateTimeField(null=True, blank=True)
    eta_window_start = models.DateTimeField(null=True, blank=True)
    eta_window_end = models.DateTimeField(null=True, blank=True)
    # ETA accuracy (a KPI, SPEC 5): the dropoff ETA and window predicted at (the last) assignment, and at
    # delivery the error, actual minus predicted, in seconds (positive: late).
    eta_predicted_at_assignment = models.DateTimeField(null=True, blank=True)
    eta_window_start_at_assignment = models.DateTimeField(null=True, blank=True)
    eta_window_end_at_assignment = models.DateTimeField(null=True, blank=True)
    eta_error_s = models.IntegerField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["merchant", "external_id"], name="delivery_external_id_per_merchant")
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="delivery_status_created_idx"),
            # The zone's recent ETA errors (the window of deliveries/eta.py).
            models.Index(fields=["zone", "finished_at"], name="delivery_zone_finished_idx"),
            # A driver's last finished delivery: dispatch reads it for every candidate (idle since).
            models.Index(fields=["driver", "finished_at"], name="delivery_driver_finished_idx"),
            # What a driver carries now: counted for every candidate of every dispatch, and at each assignment.
            models.Index(
                fields=["driver"], condition=models.Q(status__in=ACTIVE_STATUSES), name="delivery_driver_carried_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.status})"

    @property
    def tracking_url(self) -> str:
        return f"{settings.RELAY_PUBLIC_URL}/t/{self.tracking_token}"

    @property
    def waiting_since(self) -> datetime | None:
        """When its wait for a driver began: when it last needed one or, held back on purpose for `ready_at`,
        when the hold ends, or when ops last resolved an escalation of it. The escalation ladder counts from
        here; None while a driver has it."""
        if self.unassigned_since is None:
            return None
        return max(filter(None, [self.unassigned_since, self.dispatch_not_before, self.ladder_restarted_at]))

    def _entered(self) -> None:
        self.status_changed_at = timezone.now()

    # --- lifecycle transitions: they only set fields; the actions in services/ save and audit ------------
    @transition(field=status, source=DeliveryStatus.PENDING, target=DeliveryStatus.OFFERED)
    def mark_offered(self) -> None:
        self._entered()

    @transition(field=status, source=DeliveryStatus.OFFERED, target=DeliveryStatus.PENDING)
    def mark_unoffered(self) -> None:
        self._entered()

    @transition(field=status, source=[DeliveryStatus.PENDING, DeliveryStatus.OFFERED], target=DeliveryStatus.ASSIGNED)
    def assign(self, driver: Driver) -> None:
        self._entered()
        self.driver = driver
        self.assigned_at = self.status_changed_at
        self.unassigned_since = None
        self.escalation_level = EscalationLevel.NONE

    @transition(field=status, source=DeliveryStatus.ASSIGNED, target=DeliveryStatus.PENDING)
    def unassign(self) -> None:
        self._entered()
        self.driver = None
        self.assigned_at = None
        self.unassigned_since = self.status_changed_at
        self.reassignment_count += 1
        # Waiting afresh: the ladder climbs from here. A level its driver's not-moving escalation reached would
        # otherwise skip the 5-minute and no-candidate alerts of this new wait.
        self.escalation_level = EscalationLevel.NONE

    @transition(field=status, source=DeliveryStatus.ASSIGNED, target=DeliveryStatus.PICKED_UP)
    def pick_up(self) -> None:
        self._entered()
        self.picked_up_at = self.status_changed_at

    @transition(field=status, source=DeliveryStatus.PICKED_UP, target=DeliveryStatus.DELIVERED)
    def deliver(self, proof: dict | None) -> None:
        self._entered()
        self.finished_at = self.status_changed_at
        self.proof = proof

    @transition(field=status, source=DeliveryStatus.PICKED_UP, target=DeliveryStatus.FAILED)
    def fail(self, reason: str) -> None:
        self._entered()
        self.finished_at = self.status_changed_at
        self.outcome_reason = reason

    @transition(field=status, source=[*OPEN_STATUSES, DeliveryStatus.ASSIGNED], target=DeliveryStatus.CANCELLED)
    def cancel(self, reason: str) -> None:
        self._entered()
        self.finished_at = self.status_changed_at
        self.outcome_reason = reason


class OfferStatus(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class DeclineReason(models.TextChoices):
    TOO_FAR = "too_far"
    BUSY = "busy"
    VEHICLE = "vehicle"
    OTHER = "other"


class OfferQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=OfferStatus.PENDING)

    def accepted(self):
        return self.filter(status=OfferStatus.ACCEPTED)

    def asked(self):
        """Offers a driver was asked to answer: all but ops' forced assignments (accepted without asking)."""
        return self.exclude(kind="forced")

    def pending_for_driver(self, driver):
        """The driver's (or driver id's) pending offer: at most one (a partial unique index)."""
        return self.pending().filter(driver=driver)

    def rounds(self, delivery):
        """The delivery's offers declined or let expire since it last needed a driver."""
        return self.filter(
            delivery=delivery,
            status__in=[OfferStatus.DECLINED, OfferStatus.EXPIRED],
            sent_at__gte=delivery.unassigned_since or delivery.created_at,
        )


class Offer(FSMModelMixin, models.Model):
    """One delivery offered to one driver with a deadline (SPEC 2.1). A forced assignment by ops is recorded
    as an offer of kind `forced`, accepted at once, so every assignment has its offer."""

    class Kind(models.TextChoices):
        DISPATCH = "dispatch"
        DIRECT = "direct"
        FORCED = "forced"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="offers")
    driver = models.ForeignKey(Driver, on_delete=models.PROTECT, related_name="offers")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.DISPATCH)
    status = FSMField(default=OfferStatus.PENDING, choices=OfferStatus.choices, protected=True)
    sent_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    responded_at = models.DateTimeField(null=True, blank=True)
    decline_reason = models.CharField(max_length=16, choices=DeclineReason.choices, blank=True)
    decline_note = models.CharField(max_length=300, blank=True)
    withdraw_reason = models.CharField(max_length=32, blank=True)
    # Set when an accepted offer's delivery was later taken from the driver (release rate, SPEC 3.1).
    release_reason = models.CharField(max_length=300, blank=True)
    distance_km = models.FloatField()
    eta_to_pickup_s = models.PositiveIntegerField()
    estimated_pay = models.DecimalField(max_digits=8, decimal_places=2)
    surge_multiplier = models.DecimalField(max_digits=4, decimal_places=2, default=1)
    # The push of `offer.created` failed (the channel layer was down): the app could not hear the offer live, so
    # its expiry is not the driver's miss (SPEC 2.1 counts offers the driver *lets* expire).
    unheard = models.BooleanField(
        default=False, help_text="The offer could not be pushed to the app; its expiry does not count as a miss."
    )

    objects = OfferQuerySet.as_manager()

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery"],
                condition=models.Q(status="pending"),
                name="one_pending_offer_per_delivery",
            ),
            models.UniqueConstraint(
                fields=["driver"], condition=models.Q(status="pending"), name="one_pending_offer_per_driver"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.delivery.external_id} → {self.driver} ({self.status})"

    def _responded(self) -> None:
        self.responded_at = timezone.now()

    @transition(field=status, source=OfferStatus.PENDING, target=OfferStatus.ACCEPTED)
    def accept(self) -> None:
        self._responded()

    @transition(field=status, source=OfferStatus.PENDING, target=OfferStatus.DECLINED)
    def decline(self, reason: str, note: str) -> None:
        self._responded()
        self.decline_reason = reason
        self.decline_note = note

    @transition(field=status, source=OfferStatus.PENDING, target=OfferStatus.EXPIRED)
    def expire(self) -> None:
        pass

    @transition(field=status, source=OfferStatus.PENDING, target=OfferStatus.WITHDRAWN)
    def withdraw(self, reason: str) -> None:
        self.withdraw_reason = reason


class EscalationStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Escalation(FSMModelMixin, models.Model):
    """Something ops must look at (SPEC 2.3). At most one unresolved escalation per delivery. Only the
    transitions below write `status`."""

    class Reason(models.TextChoices):
        UNASSIGNED = "unassigned", "Unassigned too long"
        OFFER_ROUNDS = "offer_rounds", "Offer rounds without acceptance"
        REASSIGNMENTS = "reassignments", "Too many reassignments"
        NOT_MOVING = "not_moving", "Driver not moving toward pickup"
        OVERDUE = "overdue", "Past its dropoff ETA"
        DRIVER_STALE = "driver_stale", "Driver went stale holding it"
        DRIVER_OFFLINE = "driver_offline", "Driver went offline holding it"
        NO_CANDIDATE = "no_candidate", "No driver in reach"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="escalations")
    reason = models.CharField(max_length=32, choices=Reason.choices)
    # A record exists from ALERT up: WARN only widens the search.
    level = models.PositiveSmallIntegerField(
        choices=[(level.value, level.label) for level in (EscalationLevel.ALERT, EscalationLevel.CRITICAL)],
        default=EscalationLevel.ALERT,
    )
    status = FSMField(max_length=16, choices=EscalationStatus.choices, default=EscalationStatus.OPEN, protected=True)
    detail = models.CharField(max_length=300, blank=True)
    opened_at = models.DateTimeField(default=timezone.now, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-level", "opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["delivery"],
                condition=~models.Q(status="resolved"),
                name="one_unresolved_escalation_per_delivery",
            )
        ]

    def __str__(self) -> str:
        return f"L{self.level} {self.get_reason_display()} ({self.status})"

    @property
    def open_seconds(self) -> float | None:
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.opened_at).total_seconds()

    # --- transitions: they only set fields; the actions in services/escalations.py save and audit ----------
    @transition(field=status, source=EscalationStatus.OPEN, target=EscalationStatus.ACKNOWLEDGED)
    def acknowledge(self, *, by_user_id) -> None:
        self.acknowledged_at = timezone.now()
        self.acknowledged_by_id = by_user_id

    @transition(
        field=status, source=[EscalationStatus.OPEN, EscalationStatus.ACKNOWLEDGED], target=EscalationStatus.RESOLVED
    )
    def resolve(self, note: str, *, by_user_id=None) -> None:
        """By an ops user, or by the system (no user) when the cause went away."""
        self.resolved_at = timezone.now()
        self.resolved_by_id = by_user_id
        self.resolution_note = note


class WebhookDelivery(models.Model):
    """One webhook to a merchant: written with the change it reports, sent after commit, retried over hours
    (deliveries/webhooks.py); deleted RELAY_WEBHOOK_RETENTION after it was created once sent or failed."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhooks")
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="webhooks")
    type = models.CharField(max_length=64)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # While pending, when its next attempt is due (the beat sweep queues it then); none once sent or failed.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The sweep's question every minute, over a table that keeps every webhook of the retention.
            models.Index(
                fields=["next_attempt_at"], condition=models.Q(status="pending"), name="webhook_pending_due_idx"
            ),
            # The daily purge's (and the admin list's, newest first).
            models.Index(fields=["created_at"], name="webhook_created_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} → {self.merchant} ({self.status})"


class TravelSpeed(models.Model):
    """Measured speed of completed trips (pickup to dropoff) per zone, vehicle and hour of the week: what the
    ETA learns from (deliveries/eta.py). A running mean, updated at each delivery."""

    zone = models.ForeignKey(Zone, on_delete=models.CASCADE, related_name="travel_speeds")
    vehicle = models.CharField(max_length=16)
    hour_of_week = models.PositiveSmallIntegerField(help_text="0 = Monday 00:00–01:00 in the zone's time zone")
    trips = models.PositiveIntegerField(default=0)
    mean_kmh = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["zone", "vehicle", "hour_of_week"], name="one_travel_speed_per_cell")
        ]

    def __str__(self) -> str:
        return f"{self.zone.code} {self.vehicle} h{self.hour_of_week}: {self.mean_kmh:.1f} km/h over {self.trips}"


class Breadcrumb(models.Model):
    """One point of a driver's trail while carrying a delivery (assigned or picked up), at most one per 10 s.
    Buffered by drivers/trail.py, written in batches; deleted after RELAY_BREADCRUMB_RETENTION (privacy)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="breadcrumbs")
    driver = models.ForeignKey(Driver, on_delete=models.CASCADE, related_name="+")
    lat = models.FloatField()
    lng = models.FloatField()
    recorded_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["recorded_at"]
        indexes = [models.Index(fields=["delivery", "recorded_at"], name="breadcrumb_delivery_idx")]

    def __str__(self) -> str:
        return f"{self.lat:.5f},{self.lng:.5f} at {timezone.localtime(self.recorded_at):%H:%M:%S}"


class DeliveryCost(models.Model):
    """What a finished delivery cost and earned (SPEC 5), written once when it ends (delivered, failed or
    cancelled) by `deliveries.services.costs.record_cost_locked`. Paid idle time is shared out per zone and day
    by the analytics app, not here."""

    delivery = models.OneToOneField(Delivery, on_delete=models.CASCADE, primary_key=True, related_name="cost")
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, related_name="+")
    driver = models.ForeignKey(Driver, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=16, choices=DeliveryStatus.choices)
    ended_at = models.DateTimeField(db_index=True)
    distance_km = models.FloatField(help_text="Ridden: to pickup, then pickup to dropoff once picked up")
    minutes = models.FloatField(help_text="From assignment to the end")
    waiting_minutes = models.FloatField(help_text="At pickup, arrived before the order was ready")
    surge_multiplier = models.DecimalField(max_digits=4, decimal_places=2, default=1)
    pay_base = models.DecimalField(max_digits=8, decimal_places=2)
    pay_distance = models.DecimalField(max_digits=8, decimal_places=2)
    pay_time = models.DecimalField(max_digits=8, decimal_places=2)
    pay_surge = models.DecimalField(max_digits=8, decimal_places=2)
    pay_waiting = models.DecimalField(max_digits=8, decimal_places=2)
    driver_pay = models.DecimalField(max_digits=8, decimal_places=2)
    fee = models.DecimalField(max_digits=8, decimal_places=2, help_text="Charged to the merchant (not if cancelled)")
    margin = models.DecimalField(max_digits=8, decimal_places=2, help_text="Fee minus driver pay")

    def __str__(self) -> str:
        return f"{self.delivery_id}: pay {self.driver_pay}, fee {self.fee}"
