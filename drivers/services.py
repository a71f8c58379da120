"""Driver-level writes that need nothing from deliveries: state transitions with their audit event, shifts."""

from django.utils import timezone

from core.audit import Actor, record_event
from drivers import credentials
from drivers.models import Driver, DriverState, Shift


def lock_driver(driver_id) -> Driver:
    return Driver.objects.select_for_update().get(pk=driver_id)


def transition_driver(driver: Driver, transition: str, *, actor: Actor, reason: str = "", **payload) -> None:
    """Apply one availability transition to a locked driver, save it, and audit it with the time spent in the
    state it leaves. Must run inside the caller's transaction."""
    previous, entered_at = driver.state, driver.state_changed_at
    getattr(driver, transition)()
    driver.save(update_fields=["state", "state_changed_at", "missed_offers_in_row"])
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


def start_shift(driver: Driver, *, actor: Actor) -> Shift:
    now = timezone.now()
    shift = Shift.objects.filter(driver=driver, started_at__isnull=True, planned_start__lte=now).first()
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


def current_shift(driver: Driver) -> Shift | None:
    return Shift.objects.filter(driver=driver, started_at__isnull=False, ended_at__isnull=True).first()
