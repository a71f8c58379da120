import uuid

from django.db import models
from django.utils import timezone
from rest_framework.authtoken.models import Token


class AppendOnlyError(Exception):
    """Audit events are written once and never changed or deleted."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")

    def for_delivery(self, delivery_id):
        return self.filter(delivery_id=delivery_id).order_by("id")


class AuditEvent(models.Model):
    """One append-only stream for every change of a delivery, offer, driver, shift or escalation.

    Subjects are referenced by id, not by foreign key: the trail must outlive and never cascade with the rows
    it describes. On PostgreSQL a trigger refuses UPDATE and DELETE even in raw SQL (migration 0002).
    """

    class ActorKind(models.TextChoices):
        SYSTEM = "system"
        DRIVER = "driver"
        OPS = "ops"
        MERCHANT = "merchant"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    type = models.CharField(max_length=64, db_index=True)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    subject_kind = models.CharField(max_length=16)
    subject_id = models.UUIDField()
    delivery_id = models.UUIDField(null=True, blank=True, db_index=True)
    driver_id = models.UUIDField(null=True, blank=True, db_index=True)
    from_state = models.CharField(max_length=32, blank=True)
    to_state = models.CharField(max_length=32, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["subject_kind", "subject_id"])]
        base_manager_name = "objects"  # Django's own lookups refuse changes too, not only ours

    def __str__(self) -> str:
        return f"{timezone.localtime(self.occurred_at):%Y-%m-%d %H:%M:%S} {self.type}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class IdempotencyRecord(models.Model):
    """The first response to a POST with an Idempotency-Key, kept for 24 h and replayed byte for byte."""

    caller = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    completed = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True)
    content_type = models.CharField(max_length=128, blank=True)
    body = models.BinaryField(null=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["caller", "key"], name="idempotency_unique_caller_key")]

    def __str__(self) -> str:
        return f"{self.key} ({'done' if self.completed else 'running'})"


class ApiToken(Token):
    """An API token as the console shows it: whose it is and the last 4 characters of its key, never the key
    (whoever reads it can act as its user: a superuser's token is every ops right on the API)."""

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.user} (…{self.key[-4:]})"
