"""Escalations (SPEC 2.3): opening or raising one, closing it when its cause goes away, and ops' hand on it."""

from datetime import datetime

from django.utils import timezone
from django_fsm import can_proceed

from core import compiled
from core.audit import Actor, atomic_action, record_event
from core.compiled import CompiledRead
from core.errors import DomainError, NotFound
from core.fsm import run_transition
from core.models import AuditEvent
from deliveries import messages
from deliveries.models import OPEN_STATUSES, Delivery, DeliveryStatus, Escalation, EscalationLevel, EscalationStatus
from deliveries.services.ops_feed import push_ops
from deliveries.webhooks import enqueue_webhook

# Which causes go away with which delivery status.
_GONE_WHEN = {
    DeliveryStatus.ASSIGNED: {
        Escalation.Reason.NOT_MOVING,  # of the driver it had before: a new assignment is a new driver
        Escalation.Reason.UNASSIGNED,
        Escalation.Reason.OFFER_ROUNDS,
        Escalation.Reason.REASSIGNMENTS,
        Escalation.Reason.DRIVER_OFFLINE,
        Escalation.Reason.NO_CANDIDATE,
    },
    DeliveryStatus.PICKED_UP: {Escalation.Reason.NOT_MOVING},
}


class EscalationClosed(DomainError):
    code = "escalation_resolved"
    default_detail = "This escalation is already resolved."


def _record(escalation: Escalation, type: str, *, actor: Actor, from_state: str, payload: dict | None = None):
    record_event(
        type,
        actor=actor,
        subject=escalation,
        delivery_id=escalation.delivery_id,
        from_state=from_state,
        to_state=escalation.status,
        payload={"reason": escalation.reason, "level": escalation.level} | (payload or {}),
    )


def raise_escalation_locked(
    delivery: Delivery,
    *,
    level: EscalationLevel,
    reason: str,
    detail: str = "",
    detail_at: datetime | None = None,
    actor: Actor | None = None,
) -> Escalation | None:
    """Raise a locked delivery to `level`: the delivery's own level (never lowered) and, from ALERT, its one
    unresolved Escalation (opened, or raised; never lowered). WARN only records that the search widens.
    `detail_at`: the instant the detail names in UTC (`core.time_zones.utc_clock`), recorded beside it so the
    console writes it in its viewer's zone. Returns the unresolved escalation, if any. Must run inside the caller's
    transaction."""
    actor = actor or Actor.system("escalation")
    said = {"detail": detail} | ({"detail_at": detail_at.isoformat()} if detail_at else {})
    if level > delivery.escalation_level:
        delivery.escalation_level = level
        delivery.save(update_fields=["escalation_level"])
    if level < EscalationLevel.ALERT:
        record_event(
            "escalation.warned",
            actor=actor,
            subject=delivery,
            delivery_id=delivery.pk,
            payload={"level": level} | said,
        )
        return None
    escalation = delivery.escalations.exclude(status=EscalationStatus.RESOLVED).first()
    if escalation is not None and escalation.level >= level:
        if reason != escalation.reason:
            _add_cause(escalation, reason=reason, said=said, actor=actor)
        return escalation
    if escalation is None:
        escalation = Escalation.objects.create(delivery=delivery, reason=reason, level=level, detail=detail)
        _record(escalation, "escalation.opened", actor=actor, from_state="", payload=said)
        push_ops("escalation.opened", messages.escalation(escalation))
    else:
        previous = escalation.level
        escalation.level = level
        escalation.detail = detail or escalation.detail
        escalation.save(update_fields=["level", "detail"])
        _record(
            escalation,
            "escalation.raised",
            actor=actor,
            from_state=escalation.status,
            payload={"from_level": previous},
        )
        push_ops("escalation.updated", messages.escalation(escalation))
    if level >= EscalationLevel.CRITICAL:
        enqueue_webhook(delivery, "delivery.escalated", messages.delivery_escalated(escalation, detail=detail))
    return escalation


def _add_cause(escalation: Escalation, *, reason: str, said: dict, actor: Actor) -> None:
    """Another cause of a delivery whose one unresolved escalation is already at the level it calls for (the driver
    went stale with an order already overdue): put first in what ops read of it, audited and pushed, once (the
    sweeps see the same cause again every pass). `said`: its detail (and `detail_at`), as recorded."""
    detail = said["detail"] or Escalation.Reason(reason).label
    if detail in escalation.detail:
        return
    escalation.detail = f"{detail}; {escalation.detail}"[: Escalation._meta.get_field("detail").max_length]
    escalation.save(update_fields=["detail"])
    _record(
        escalation,
        "escalation.cause_added",
        actor=actor,
        from_state=escalation.status,
        payload={"cause": reason} | said | {"detail": detail},
    )
    push_ops("escalation.updated", messages.escalation(escalation))


# A driver who vanished holding a picked-up delivery (SPEC 2.3): their return online takes these causes away.
_DRIVER_LOSS = {Escalation.Reason.DRIVER_STALE, Escalation.Reason.DRIVER_OFFLINE}


def driver_back_locked(delivery: Delivery, *, actor: Actor) -> None:
    """The driver of this picked-up delivery, gone stale or offline with it, is online again: the escalation their
    loss opened closes itself; one with another cause besides (the order is overdue) stays open for that cause
    alone, which becomes its reason. Must run inside the caller's transaction, the delivery locked."""
    escalation = delivery.escalations.exclude(status=EscalationStatus.RESOLVED).first()
    if escalation is None:
        return
    causes = _causes(escalation)
    remaining = [(cause, detail) for cause, detail in causes if cause not in _DRIVER_LOSS]
    if len(remaining) == len(causes):
        return
    if not remaining:
        _close(escalation, actor=actor, note="Closed automatically: the driver is back online.")
        return
    gone = [cause for cause, _ in causes if cause in _DRIVER_LOSS]
    escalation.reason = remaining[0][0]
    escalation.detail = "; ".join(detail for _, detail in reversed(remaining) if detail)
    escalation.save(update_fields=["reason", "detail"])
    _record(escalation, "escalation.cause_gone", actor=actor, from_state=escalation.status, payload={"causes": gone})
    push_ops("escalation.updated", messages.escalation(escalation))


_CAUSE_EVENTS = ["escalation.opened", "escalation.cause_added", "escalation.cause_gone"]


def _causes(escalation: Escalation) -> list[tuple[str, str]]:
    """The escalation's causes with what ops were told of each, first to last, from its audit trail: the one it
    was opened for, then each added (`_add_cause`) and not gone since."""
    causes = []
    trail = AuditEvent.objects.filter(subject_kind="escalation", subject_id=escalation.pk)
    for event in trail.filter(type__in=_CAUSE_EVENTS).order_by("id"):
        if event.type == "escalation.opened":
            causes.append((event.payload["reason"], event.payload.get("detail", "")))
        elif event.type == "escalation.cause_added":
            causes.append((event.payload["cause"], event.payload["detail"]))
        else:
            causes = [(cause, detail) for cause, detail in causes if cause not in event.payload["causes"]]
    return causes


def resolve_gone_causes(delivery: Delivery, *, actor: Actor) -> None:
    """Close the delivery's escalations whose cause its new status removed (called on every transition)."""
    if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED, DeliveryStatus.FAILED):
        reasons = None  # a finished delivery has nothing left to escalate
    else:
        reasons = _GONE_WHEN.get(delivery.status)
        if not reasons:
            return
    if reasons is None:
        unresolved = _unresolved.instances(delivery.pk)
    else:
        unresolved = _unresolved_for.instances(delivery.pk, list(reasons))
    for escalation in unresolved:
        _close(escalation, actor=actor, note=f"Closed automatically: the delivery is {delivery.status}.")


def _unresolved_query(delivery_id, reasons=None):
    rows = Escalation.objects.filter(delivery_id=delivery_id).exclude(status=EscalationStatus.RESOLVED)
    return rows if reasons is None else rows.filter(reason__any=reasons)


# Asked at every transition of every delivery: compiled once (core.compiled).
_unresolved = CompiledRead(Escalation, _unresolved_query, (compiled.UUID,))
_unresolved_for = CompiledRead(Escalation, _unresolved_query, (compiled.UUID, [compiled.TEXT]))


def _close(escalation: Escalation, *, actor: Actor, note: str) -> None:
    previous = escalation.status
    run_transition(escalation.resolve, note, by_user_id=actor.user_id)
    escalation.save(update_fields=["status", "resolved_at", "resolved_by", "resolution_note"])
    _record(
        escalation,
        "escalation.resolved",
        actor=actor,
        from_state=previous,
        payload={"note": note, "open_seconds": escalation.open_seconds},
    )
    push_ops("escalation.updated", messages.escalation(escalation))


def _lock_escalation(escalation_id) -> Escalation:
    """Lock in the order every action uses: the escalation's delivery first, then the escalation row alone.
    (Escalation first, or one FOR UPDATE over the join, deadlocked against a driver accepting the delivery.)"""
    from deliveries.services.common import lock_delivery  # common imports this module

    delivery_id = Escalation.objects.filter(pk=escalation_id).values_list("delivery_id", flat=True).first()
    if delivery_id is None:
        raise NotFound("No such escalation.")
    delivery = lock_delivery(delivery_id)
    escalation = Escalation.objects.select_for_update().get(pk=escalation_id)
    escalation.delivery = delivery
    return escalation


def acknowledge_escalation(escalation_id, *, actor: Actor) -> Escalation:
    with atomic_action():
        escalation = _lock_escalation(escalation_id)
        if escalation.status == EscalationStatus.RESOLVED:
            raise EscalationClosed()
        if can_proceed(escalation.acknowledge):  # acknowledging twice changes nothing
            run_transition(escalation.acknowledge, by_user_id=actor.user_id)
            escalation.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
            _record(escalation, "escalation.acknowledged", actor=actor, from_state=EscalationStatus.OPEN)
            push_ops("escalation.updated", messages.escalation(escalation))
    return escalation


def resolve_escalation(escalation_id, *, actor: Actor, note: str) -> Escalation:
    with atomic_action():
        escalation = _lock_escalation(escalation_id)
        if escalation.status == EscalationStatus.RESOLVED:
            raise EscalationClosed()
        _close(escalation, actor=actor, note=note)
        _restart_ladder_if_still_waiting(escalation.delivery)
    return escalation


def _restart_ladder_if_still_waiting(delivery: Delivery) -> None:
    """Ops resolved it, yet it still has no driver: the ladder climbs again from now (warn, then a new
    escalation), instead of staying at the level it had reached, where it would never escalate again."""
    if delivery.status not in OPEN_STATUSES:
        return
    delivery.escalation_level = EscalationLevel.NONE
    delivery.ladder_restarted_at = timezone.now()
    delivery.save(update_fields=["escalation_level", "ladder_restarted_at"])
