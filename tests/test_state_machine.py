"""A hypothesis state machine over deliveries and drivers (issue 13): random sequences of everything merchants,
drivers, ops and the clock can do, with the invariants of tests/invariants.py checked after every step and "no
silent failure" checked whenever the sweeps have run.

Examples and steps come from the environment so CI stays fast (defaults: 15 examples of up to 40 steps, about a
minute on 2 cores); a long hunt raises them: RELAY_STATEFUL_EXAMPLES=300 RELAY_STATEFUL_STEPS=80.
"""

import os
from datetime import datetime, timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from core.audit import Actor
from core.errors import DomainError
from core.models import AuditEvent
from deliveries.models import Delivery, DeliveryStatus, Escalation, EscalationStatus, Offer
from deliveries.services import availability, escalations, ladder, offers, progress, reassignment
from deliveries.tasks import expire_overdue_offers
from drivers import locations
from drivers.models import Driver, DriverState
from tests import factories, invariants

EXAMPLES = int(os.environ.get("RELAY_STATEFUL_EXAMPLES", "15"))
STEPS = int(os.environ.get("RELAY_STATEFUL_STEPS", "40"))
START = datetime.fromisoformat("2026-11-25T12:00:00+00:00")
# Where drivers ping from: inside the demo zone "centro", 0 to 3 km east of the pickups.
SPOTS = [factories.east(km) for km in (0.0, 0.5, 1.5, 3.0)]
pick = st.integers(min_value=0, max_value=10_000)


def run_every_sweep() -> None:
    expire_overdue_offers()
    availability.mark_stale_drivers()
    ladder.dispatch_waiting()
    ladder.run_ladder()


def snapshot() -> tuple:
    """Everything a sweep can change, as values."""
    return (
        sorted(Delivery.objects.values_list("pk", "status", "driver_id", "escalation_level")),
        sorted(Offer.objects.values_list("pk", "status")),
        sorted(Escalation.objects.values_list("pk", "status", "level")),
        sorted(Driver.objects.values_list("pk", "state")),
        AuditEvent.objects.count(),
    )


class Dispatch(RuleBasedStateMachine):
    """Each example runs inside a savepoint that is rolled back at its end (the audit trail is append-only even
    for tests, so rows cannot be deleted), on a clock that only moves when a rule says so."""

    def __init__(self):
        super().__init__()
        self.savepoint = transaction.atomic()
        # pytest-django's test transaction already wraps us; marking this block as the test case's lets the
        # actions open their durable transactions inside it, as they do inside the test's own.
        self.savepoint._from_testcase = True
        self.savepoint.__enter__()
        self.clock = time_machine.travel(START, tick=False)
        self.traveller = self.clock.start()
        self.merchant = factories.MerchantFactory()
        self.ops = Actor.ops(factories.OpsUserFactory())
        self.created = 0
        self.swept = False

    def teardown(self):
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)
        self.clock.stop()

    # --- helpers -----------------------------------------------------------------------------------------
    def _act(self, action, *args, **kwargs):
        """Run one action; a domain refusal (409, 404, ...) is an answer, anything else fails the example."""
        self.swept = False
        try:
            return action(*args, **kwargs)
        except DomainError:
            return None

    @staticmethod
    def _one(queryset, index):
        rows = list(queryset.order_by("pk"))
        return rows[index % len(rows)] if rows else None

    # --- merchants -----------------------------------------------------------------------------------------
    @initialize()
    def first_drivers(self):
        for spot in SPOTS[:2]:
            factories.online_driver(*spot)

    @rule(ready_in_min=st.sampled_from([None, None, 5, 25]))
    def create_delivery(self, ready_in_min):
        self.created += 1
        extra = {}
        if ready_in_min is not None:
            extra["ready_at"] = (timezone.now() + timedelta(minutes=ready_in_min)).isoformat()
        self._act(factories.new_delivery, self.merchant, f"order-{self.created}", **extra)

    @rule(index=pick)
    def cancel(self, index):
        if delivery := self._one(Delivery.objects.open() | Delivery.objects.filter(status="assigned"), index):
            self._act(progress.cancel_delivery, delivery.pk, actor=Actor.merchant(self.merchant), reason="changed")

    # --- drivers ---------------------------------------------------------------------------------------------
    @rule(spot=st.sampled_from(SPOTS))
    def new_driver(self, spot):
        factories.online_driver(*spot)

    @rule(index=pick, spot=st.sampled_from(SPOTS))
    def ping(self, index, spot):
        if driver := self._one(Driver.objects.exclude(state=DriverState.OFFLINE), index):
            factories.ping(driver, *spot)

    @rule(index=pick, state=st.sampled_from(DriverState.values))
    def ask_for_state(self, index, state):
        """The app's availability switch: online, break, back, offline (busy is refused as a request)."""
        if driver := self._one(Driver.objects.all(), index):
            self._act(availability.set_availability, state, actor=Actor.driver(driver))
            if state == DriverState.AVAILABLE:
                factories.ping(driver, *SPOTS[index % len(SPOTS)])

    @rule(index=pick, accept=st.booleans())
    def answer_offer(self, index, accept):
        if offer := self._one(Offer.objects.pending().select_related("driver"), index):
            actor = Actor.driver(offer.driver)
            if accept:
                self._act(offers.accept_offer, offer.pk, actor=actor)
            else:
                self._act(offers.decline_offer, offer.pk, actor=actor, reason="busy")

    @rule(index=pick, step=st.sampled_from(["pickup", "deliver", "fail", "release"]))
    def work_on_delivery(self, index, step):
        carried = Delivery.objects.filter(status__in=invariants.CARRYING).select_related("driver")
        if delivery := self._one(carried, index):
            actor = Actor.driver(delivery.driver)
            if step == "pickup":
                self._act(progress.pick_up_delivery, delivery.pk, actor=actor)
            elif step == "deliver":
                self._act(progress.deliver_delivery, delivery.pk, actor=actor)
            elif step == "fail":
                self._act(progress.fail_delivery, delivery.pk, actor=actor, reason="nobody home")
            else:
                self._act(reassignment.release_delivery, delivery.pk, actor=actor, reason="flat tyre")

    # --- ops -------------------------------------------------------------------------------------------------
    @rule(index=pick, driver_index=pick, how=st.sampled_from(["dispatch", "direct", "force"]))
    def ops_reassign(self, index, driver_index, how):
        delivery = self._one(Delivery.objects.open() | Delivery.objects.filter(status="assigned"), index)
        driver = self._one(Driver.objects.all(), driver_index)
        if delivery is None or driver is None:
            return
        driver_id = None if how == "dispatch" else driver.pk
        self._act(
            reassignment.reassign_as_ops_ask, delivery.pk, driver_id=driver_id, force=how == "force", actor=self.ops
        )

    @rule(index=pick, resolve=st.booleans())
    def ops_answer_escalation(self, index, resolve):
        if escalation := self._one(Escalation.objects.exclude(status=EscalationStatus.RESOLVED), index):
            if resolve:
                self._act(escalations.resolve_escalation, escalation.pk, actor=self.ops, note="handled")
            else:
                self._act(escalations.acknowledge_escalation, escalation.pk, actor=self.ops)

    # --- the clock and the sweeps ----------------------------------------------------------------------------
    @rule(seconds=st.sampled_from([5, 31, 61, 95, 130, 310, 620]))
    def time_passes(self, seconds):
        """Time moves and every beat sweep runs once, as the schedules would."""
        self.traveller.shift(timedelta(seconds=seconds))
        run_every_sweep()
        # Beat ticking twice (two beats, a redelivered task): the same sweeps again at the same instant change
        # nothing (the tasks are safe to run twice).
        before = snapshot()
        run_every_sweep()
        assert snapshot() == before
        self.swept = True

    # --- what must hold --------------------------------------------------------------------------------------
    @invariant()
    def everything_agrees(self):
        assert invariants.all_problems() == []

    @invariant()
    def nothing_waits_unnoticed(self):
        if self.swept:
            assert invariants.silent_deliveries() == []

    @invariant()
    def terminal_deliveries_stay_terminal(self):
        finished = Delivery.objects.filter(status__in=[DeliveryStatus.DELIVERED, DeliveryStatus.FAILED])
        assert not finished.filter(driver__isnull=True).exists()


@pytest.mark.django_db
def test_random_sequences_of_everything_keep_the_invariants(zones, settings_override):
    run_state_machine_as_test(
        Dispatch,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            database=None,  # no example database left in the work tree; failures print their steps
        ),
    )


@pytest.fixture
def settings_override(settings):
    """The location index on PostgreSQL (its fallback): its rows roll back with each example, Redis's would not."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    locations.reset_redis()
    yield
    locations.reset_redis()
