"""Writing the audit trail. Every action calls `record_event` inside the transaction of its change.

An action's transaction is `atomic_action()`: the events it records are kept in memory and written as ONE
multi-row INSERT just before it ends, inside it (a dispatch records four, an accept three: one round trip instead
of one each). Nothing reads an action's own events back before it ends; an event recorded in a savepoint nested
in the action (which may roll back on its own) is written at once instead, so it always goes where its savepoint
goes. Outside an action (commands, migrations) every event is written at once, as before."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import connection, transaction

from core import rows
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
    def is_ops(self) -> bool:
        return self.kind == AuditEvent.ActorKind.OPS

    @property
    def is_merchant(self) -> bool:
        return self.kind == AuditEvent.ActorKind.MERCHANT

    @property
    def user_id(self):
        """The ops user's primary key (for "acknowledged by" and the like); None for any other actor."""
        if self.kind != AuditEvent.ActorKind.OPS:
            return None
        return get_user_model()._meta.pk.to_python(self.id)


class Recorded(list):
    """The events an action recorded at its own level, in order: written (numbered, timestamped) once it ends.
    `complete` is False when the action also wrote some apart, in a savepoint nested in it: they are not here."""

    complete = True


@dataclass
class _Batch:
    depth: int  # savepoints open when the action began: its own level
    events: Recorded = field(default_factory=Recorded)


@contextmanager
def atomic_action() -> Iterator[Recorded]:
    """The transaction of an action (an entry point): `transaction.atomic(durable=True)`, so it never runs inside
    someone else's transaction, whose audit events are written together as it ends. Yields what it records (for
    an answer that shows them: they need not be read back)."""
    with transaction.atomic(durable=True):
        batch = connection.relay_audit_batch = _Batch(depth=len(connection.savepoint_ids))
        try:
            yield batch.events
            rows.insert_numbered(AuditEvent, batch.events)
        finally:
            connection.relay_audit_batch = None


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
    event = AuditEvent(
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
    batch = getattr(connection, "relay_audit_batch", None)
    if batch is not None and len(connection.savepoint_ids) == batch.depth:
        batch.events.append(event)
    else:
        if batch is not None:
            batch.events.complete = False
        event.save(force_insert=True)
    return event
