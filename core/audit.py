"""Writing the audit trail. Every action calls `record_event` inside the transaction of its change."""

from dataclasses import dataclass

from django.db import connection

from core.models import AuditEvent


@dataclass(frozen=True)
class Actor:
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
