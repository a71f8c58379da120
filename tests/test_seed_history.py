"""`manage.py seed_history`: days of history through the real actions, rolled up, once."""

import io

import pytest
from django.core.management import CommandError, call_command

from analytics.models import ZoneDay
from core.models import AuditEvent
from deliveries.models import DeliveryCost

pytestmark = pytest.mark.django_db


def test_seeds_days_through_the_actions_and_rolls_them_up_once(zones):
    out = io.StringIO()
    call_command("seed_history", "--days", "2", "--per-day", "6", "--drivers-per-zone", "1", stdout=out)
    assert "[###############...............] day 1/2" in out.getvalue() and "day 2/2" in out.getvalue()
    assert ZoneDay.objects.count() == 2 * 3
    assert AuditEvent.objects.filter(type="offer.accepted").exists()  # the real actions left their trail
    assert DeliveryCost.objects.filter(outcome="delivered").exists()
    again = io.StringIO()
    call_command("seed_history", "--days", "2", "--if-empty", stdout=again)
    assert "nothing to do" in again.getvalue() and ZoneDay.objects.count() == 6


def test_without_zones_it_says_what_to_do_first(db):
    with pytest.raises(CommandError, match="load some first"):
        call_command("seed_history", "--days", "1", stdout=io.StringIO())


def test_refused_while_a_fleet_is_online(zones):
    from tests import factories

    factories.online_driver(*factories.CENTRO)
    with pytest.raises(CommandError, match="1 drivers are online"):
        call_command("seed_history", "--days", "1", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_a_day_ends_even_for_a_driver_who_never_becomes_available(zones, monkeypatch):
    """Found on a fresh `make demo`: seeding never got past its 12th day. A driver who was not available at
    lunch tried the break again every 10 simulated minutes, forever, and the day never ended."""
    import random
    import threading
    from datetime import date

    from django.db import connection

    from analytics.history import HistoryDay, history_accounts
    from zones.models import Zone

    merchant, ops_user, drivers = history_accounts(list(Zone.objects.filter(active=True)), 1)
    monkeypatch.setattr(HistoryDay, "online", lambda self, driver: None)  # nobody comes to work that day
    day = HistoryDay(
        date(2026, 11, 2), merchant=merchant, ops_user=ops_user, drivers=drivers, per_day=0, rng=random.Random(1)
    )

    def run_the_day():
        try:
            day.run()
        finally:
            connection.close()  # this thread's own

    running = threading.Thread(target=run_the_day, daemon=True)
    running.start()
    running.join(timeout=60)
    assert not running.is_alive(), "the simulated day never ended"
