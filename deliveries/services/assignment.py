"""The one assignment action: offer acceptance and ops' forced assignment both end here."""

from django.db.models import Count

from core.audit import Actor
from core.compiled import UUID, CompiledRead
from core.errors import DomainError
from core.fsm import saving_changes
from deliveries import messages, metrics
from deliveries.models import Delivery
from deliveries.services.common import transition_delivery
from drivers.models import Driver, DriverState
from drivers.notifications import notify_driver
from drivers.services import transition_driver


class DriverUnavailable(DomainError):
    code = "driver_unavailable"
    default_detail = "The driver is not available for another delivery."


def active_delivery_count(driver: Driver) -> int:
    counted = _carried_count(driver.pk)
    return counted[0][0] if counted else 0


# Asked at every assignment (capacity): compiled once (core.compiled); no row when the driver carries nothing.
_carried_count = CompiledRead(
    Delivery,
    lambda driver_id: (
        Delivery.objects.carried_by(driver_id).values("driver_id").annotate(n=Count("pk")).values_list("n")
    ),
    (UUID,),
)


def assign_locked(delivery: Delivery, driver: Driver, *, actor: Actor, how: str, payload=None) -> None:
    """Assign a locked delivery to a locked driver. `how` says what led here ("offer", "forced")."""
    if driver.state != DriverState.AVAILABLE:
        raise DriverUnavailable(f"{driver.name} is {driver.state.replace('_', ' ')}.")
    active = active_delivery_count(driver)
    if active >= driver.capacity:
        raise DriverUnavailable(f"{driver.name} already carries {active} of {driver.capacity} deliveries.")
    transition_delivery(delivery.assign, driver, actor=actor, payload={"how": how} | (payload or {}))
    metrics.observe_assignment(delivery)
    if active + 1 >= driver.capacity:
        driver.missed_offers_in_row = 0
        transition_driver(driver.fill_capacity, actor=actor, reason="at capacity")
    else:
        with saving_changes(driver):  # no UPDATE for a driver who missed none (most assignments)
            driver.missed_offers_in_row = 0
    notify_driver(driver.pk, "delivery.assigned", messages.driver_delivery(delivery))
