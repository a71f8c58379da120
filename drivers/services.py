"""Driver-level writes that need nothing from deliveries: state transitions with their audit event, shifts."""

from datetime import timedelta

from django.utils import timezone

from core import rows
from core.audit import Actor, record_event
from core.compiled import UUID, CompiledRead
from core.fsm import run_transition
from drivers import credentials
from drivers.models import Driver, DriverState, Shift
from drivers.selectors import current_shift


def lock_driver(driver_id) -> Driver:
    found = _locked_driver.instances(driver_id)
    if not found:
        raise Driver.DoesNotExist(f"No driver {driver_id}.")
    return found[0]


# Every offer, answer and availability change locks a driver: compiled once (core.compiled).
_locked_driver = CompiledRead(
    Driver, lambda driver_id: Driver.objects.select_for_update().filter(pk=driver_id).order_by(), (UUID,)
)


def transition_driver(transition, *, actor: Actor, reason: str = "", **payload) -> None:
    """Apply one availability transition of a locked driver (`transition_driver(driver.go_online, ...)`), save
    it, and audit it with the time spent in the state it leaves. Must run inside the caller's transaction."""
    driver: Driver = transition.__self__
    previous, entered_at = driver.state, driver.state_changed_at
    run_transition(transition)
    rows.update_fields(driver, ["state", "state_changed_at", "missed_offers_in_row"])
    if driver.state == DriverState.OFFLINE:
        credentials.on_driver_offline(driver)  # the ingest route's cached "online" is void in every process
    record_event(
        "driver.state_changed",
        actor=actor,
        subject=driver,
        driver_id=driver.pk,
        from_state=previous,
        to_state=driver.state,
        payload={
            "reason": reason,
            "seconds_in_previous": (driver.state_changed_at - entered_at).total_seconds(),
        }
        | payload,
    )


# Going online this long before a planned shift starts that shift (not a second, unplanned one).
JOIN_PLANNED_EARLY = timedelta(minutes=15)


def start_shift(driver: Driver, *, actor: Actor) -> Shift:
    """The shift going online starts (SPEC 2.2, "starts or joins a shift"): the planned one under way, or starting
    within JOIN_PLANNED_EARLY; else a new one. A planned shift whose end has passed is not joined: its end would
    rule the driver out of every dispatch as ending their shift."""
    now = timezone.now()
    planned = Shift.objects.filter(driver=driver, started_at__isnull=True, planned_start__lte=now + JOIN_PLANNED_EARLY)
    shift = planned.exclude(planned_end__lte=now).order_by("planned_start").first()
    if shift is None:
        shift = Shift(driver=driver)
    shift.started_at = now
    shift.save()
    record_event("shift.started", actor=actor, subject=shift, driver_id=driver.pk)
    return shift


def end_shift(driver: Driver, *, actor: Actor) -> Shift | None:
    shift = current_shift(driver)
    if shift is None:
        return None
    shift.ended_at = timezone.now()
    shift.save(update_fields=["ended_at"])
    record_event(
        "shift.ended",
        actor=actor,
        subject=shift,
        driver_id=driver.pk,
        payload={"seconds": (shift.ended_at - shift.started_at).total_seconds()},
    )
    return shift
