"""SPEC 4.2: for a critical zone, *idle* drivers in neighbouring *calm* zones get a push ("high demand in X"):
a driver whose own zone is busy is needed where they are, and a driver busy with a delivery cannot go."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.audit import Actor
from deliveries.services import balancing
from deliveries.services.offers import accept_offer
from drivers import locations
from drivers.models import DriverMessage
from tests import factories

pytestmark = pytest.mark.django_db


def _driver_in(lat, lng, **kwargs):
    driver = factories.online_driver(lat, lng, **kwargs)
    locations.flush_positions()  # the minute's flush: the driver's zone is known
    driver.refresh_from_db()
    return driver


def _hinted(driver) -> bool:
    return DriverMessage.objects.filter(driver=driver, type="zone.hint").exists()


def _bands(result) -> dict[str, str]:
    return {reading.snapshot.zone.code: reading.snapshot.band for reading in result.readings}


def test_a_driver_in_a_busy_neighbour_gets_no_hint_one_in_a_calm_neighbour_does(merchant, clock):
    factories.new_delivery(merchant, "centro-1")  # nobody online anywhere: Centro is critical
    ready_later = (timezone.now() + timedelta(hours=2)).isoformat()
    factories.new_delivery(merchant, "norte-1", pickup=factories.NORTE, ready_at=ready_later)  # held: Norte's demand
    in_busy_norte = _driver_in(*factories.NORTE, name="Nuno Norte")  # 1 open delivery for 1 driver: Norte is busy
    in_calm_este = _driver_in(*factories.ESTE, name="Eva Este")

    result = balancing.take_zone_snapshots()

    assert _bands(result) == {"centro": "critical", "norte": "busy", "este": "normal"}
    assert not _hinted(in_busy_norte)
    assert _hinted(in_calm_este)
    assert [hint.driver for hint in result.hints] == [in_calm_este]


def test_a_busy_driver_in_a_calm_neighbour_gets_no_hint(merchant, clock):
    carrying = factories.online_driver(*factories.ESTE, name="Beto Busy")  # capacity 1: busy once they accept
    accept_offer(
        factories.pending_offer(factories.new_delivery(merchant, "este-1", pickup=factories.ESTE)).pk,
        actor=Actor.driver(carrying),
    )
    factories.new_delivery(merchant, "centro-1")  # nobody available anywhere: Centro is critical
    idle = _driver_in(*factories.ESTE, name="Ines Idle")
    carrying.refresh_from_db()
    assert (carrying.state, carrying.current_zone.code) == ("busy", "este")

    result = balancing.take_zone_snapshots()

    assert _bands(result)["este"] == "normal"
    assert not _hinted(carrying)
    assert _hinted(idle)
    assert [hint.driver for hint in result.hints] == [idle]
