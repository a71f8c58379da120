"""Writing the audit trail. Every action calls `record_event` inside the transaction of its change."""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection

from core.models import AuditEvent


@dataclass(frozen=True)
class Actor:
    """Who acts: every action takes one, records it in its audit events, and a driver or merchant only ever
    reaches its own rows through it."""

    kind: str
    id: str = ""

    @classmethod
    def system(cls, what: str = "") -> "Actor":
        return cls(AuditEvent.ActorKind.SYSTEM, what)

    @classmethod
    def driver(cls, driver) -> "Actor":
        return cls(AuditEvent.ActorKind.DRIVER, str(driver.pk))

    @classmethod
    def ops(cls, user) -> "Actor":
        return cls(AuditEvent.ActorKind.OPS, str(user.pk))

    @classmethod
    def merchant(cls, merchant) -> "Actor":
        return cls(AuditEvent.ActorKind.MERCHANT, str(merchant.pk))

    @property
    def is_driver(self) -> bool:
        return self.kind == AuditEvent.ActorKind.DRIVER

    @property
    def is_merchant(self) -> bool:
        return self.kind == AuditEvent.ActorKind.MERCHANT

    @property
    def user_id(self):
        """The ops user's primary key (for "acknowledged by" and the like); None for any other actor."""
        if self.kind != AuditEvent.ActorKind.OPS:
            return None
        return get_user_model()._meta.pk.to_python(self.id)


def record_event(
    type: str,
    *,
    actor: Actor,
    subject,
    from_state: str = "",
    to_state: str = "",
    payload: dict | None = None,
    delivery_id=None,
    driver_id=None,
) -> AuditEvent:
    if not connection.in_atomic_block:
        # An event written outside the transaction of its change could survive a rolled-back change.
        raise RuntimeError("record_event must run inside the transaction of the change it records")
    return AuditEvent.objects.create(
        type=type,
        actor_kind=actor.kind,
        actor_id=actor.id,
        subject_kind=subject._meta.model_name,
        subject_id=subject.pk,
        delivery_id=delivery_id,
        driver_id=driver_id,
        from_state=from_state or "",
        to_state=to_state or "",
        payload=payload or {},
    )
