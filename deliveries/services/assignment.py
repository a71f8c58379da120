"""The one assignment action: offer acceptance and ops' forced assignment both end here."""

from core.audit import Actor
from core.errors import DomainError
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
    return Delivery.objects.carried_by(driver).count()


def assign_locked(delivery: Delivery, driver: Driver, *, actor: Actor, how: str, payload=None) -> None:
    """Assign a locked delivery to a locked driver. `how` says what led here ("offer", "forced")."""
    if driver.state != DriverState.AVAILABLE:
        raise DriverUnavailable(f"{driver.name} is {driver.state.replace('_', ' ')}.")
    active = active_delivery_count(driver)
    if active >= driver.capacity:
        raise DriverUnavailable(f"{driver.name} already carries {active} of {driver.capacity} deliveries.")
    transition_delivery(delivery.assign, driver, actor=actor, payload={"how": how} | (payload or {}))
    metrics.observe_assignment(delivery)
    driver.missed_offers_in_row = 0
    if active + 1 >= driver.capacity:
        transition_driver(driver.fill_capacity, actor=actor, reason="at capacity")
    else:
        driver.save(update_fields=["missed_offers_in_row"])
    notify_driver(driver.pk, "delivery.assigned", messages.driver_delivery(delivery))
