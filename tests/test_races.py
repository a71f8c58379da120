"""Races against PostgreSQL with real threads, each on its own connection (as Django's select_for_update
tests do)."""

import asyncio
import os
import random
import threading
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from core.audit import Actor
from core.errors import DomainError
from core.models import AuditEvent
from deliveries.models import Delivery, Escalation, EscalationLevel, Offer, OfferStatus
from deliveries.services import availability, offers
from deliveries.services.availability import take_offline
from deliveries.services.common import lock_delivery
from deliveries.services.dispatch import dispatch
from deliveries.services.escalations import raise_escalation_locked
from deliveries.services.progress import cancel_delivery
from deliveries.services.reassignment import reassign_as_ops_ask, release_delivery
from drivers.models import DriverMessage
from drivers.services import lock_driver
from tests import factories, invariants
from tests.conftest import api_client_for
from tests.servers import production_env, running_server

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
# Round counts come from the environment so CI stays fast on 2 cores; a long run raises them, e.g.
# RELAY_RACE_ROUNDS=500 RELAY_RACE_ACCEPTS=500 make test PYTEST_ARGS=tests/test_races.py
ACCEPTS = int(os.environ.get("RELAY_RACE_ACCEPTS", "200"))
ROUNDS = int(os.environ.get("RELAY_RACE_ROUNDS", "60"))
SEED = int(os.environ.get("RELAY_RACE_SEED", str(random.randrange(1_000_000))))


def run_together(*targets):
    """Start every callable at the same instant on its own thread and connection; return their results."""
    barrier = threading.Barrier(len(targets))
    results = [None] * len(targets)

    def run(index, target):
        try:
            barrier.wait()
            results[index] = target()
        except Exception as exc:  # a refusal is a result too
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    close_old_connections()
    return results


def test_fifty_concurrent_accepts_of_one_offer_assign_once(zones):
    driver = factories.online_driver(*factories.CENTRO)
    merchant = factories.MerchantFactory()
    delivery = factories.new_delivery(merchant, "contested")
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    api = api_client_for(driver.user)

    responses = run_together(*[lambda: api.post(f"/api/v1/offers/{offer.pk}/accept") for _ in range(50)])

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 49
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"offer_not_pending"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("assigned", driver)
    assert AuditEvent.objects.filter(delivery_id=delivery.pk, type="delivery.assigned").count() == 1


def test_accept_racing_expiry_never_ends_both_ways(zones):
    merchant = factories.MerchantFactory()
    outcomes = Counter()
    for round_ in range(2 * ROUNDS):
        driver = factories.online_driver(*factories.CENTRO)
        delivery = factories.new_delivery(merchant, f"race-{round_}")
        offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING, driver=driver)
        # Put the deadline a hair from now, so both sides run right at it.
        Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() + timedelta(milliseconds=round_ % 4))

        run_together(
            lambda o=offer, d=driver: offers.accept_offer(o.pk, actor=Actor.driver(d)),
            lambda o=offer: offers.expire_offer(o.pk),
        )

        offer.refresh_from_db()
        delivery.refresh_from_db()
        types = set(AuditEvent.objects.filter(subject_id=offer.pk).values_list("type", flat=True))
        assert not {"offer.accepted", "offer.expired"} <= types
        if offer.status == OfferStatus.ACCEPTED:
            assert (delivery.status, delivery.driver_id) == ("assigned", driver.pk)
        else:
            assert delivery.driver_id is None
        outcomes[offer.status] += 1
        # Clear the board for the next round: this driver and delivery take no further part.
        cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="race done")
        take_offline(driver.pk, actor=Actor.system("test"), reason="race done")
    assert sum(outcomes.values()) == 2 * ROUNDS


def test_ops_on_escalations_racing_a_driver_on_the_delivery_never_deadlock(zones):
    """Ops acknowledge or resolve an escalation while its delivery's driver accepts, then releases, it: both
    sides lock the delivery first, so neither waits for the other in a circle (no deadlock, no 500)."""
    driver = factories.online_driver(*factories.CENTRO)
    driver_api, ops_api = api_client_for(driver.user), api_client_for(factories.OpsUserFactory())
    merchant = factories.MerchantFactory()

    def open_escalation(delivery, reason) -> str:
        with transaction.atomic():
            delivery = lock_delivery(delivery.pk)
            return str(raise_escalation_locked(delivery, level=EscalationLevel.ALERT, reason=reason).pk)

    def ops_on(escalation_id, round_):
        if round_ % 2:
            return ops_api.post(f"/api/v1/ops/escalations/{escalation_id}/resolve", {"note": "seen"}, format="json")
        return ops_api.post(f"/api/v1/ops/escalations/{escalation_id}/acknowledge")

    def status(response_or_error):  # a deadlock is raised out of the test client
        return getattr(response_or_error, "status_code", repr(response_or_error))

    codes = Counter()
    for round_ in range(ROUNDS):  # two races a round
        factories.ping(driver, *factories.CENTRO)
        delivery = factories.new_delivery(merchant, f"race-{round_}")
        offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING, driver=driver)
        unassigned = open_escalation(delivery, Escalation.Reason.UNASSIGNED)
        accepted, ops = run_together(
            lambda o=offer: driver_api.post(f"/api/v1/offers/{o.pk}/accept"),
            lambda e=unassigned, r=round_: ops_on(e, r),
        )
        assert (status(accepted), status(ops) in (200, 409)) == (200, True), (accepted, ops)
        codes[ops.status_code] += 1

        not_moving = open_escalation(delivery, Escalation.Reason.NOT_MOVING)
        released, ops = run_together(
            lambda d=delivery: driver_api.post(f"/api/v1/deliveries/{d.pk}/release", {"reason": "flat"}, format="json"),
            lambda e=not_moving, r=round_: ops_on(e, r),
        )
        assert (status(released), status(ops) in (200, 409)) == (200, True), (released, ops)
        codes[ops.status_code] += 1
        cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="race done")
    assert sum(codes.values()) == 2 * ROUNDS


# --- issue 13: more contenders, every action at once, dispatches racing for a driver -------------------------


@pytest.mark.redis
def test_two_hundred_concurrent_accepts_through_a_server_assign_once(zones, settings, tmp_path):
    """PostgreSQL allows ~100 connections, so hundreds of accepts at once go through a production server with a
    connection pool, as drivers' phones would: every request in flight together, one assignment."""
    driver = factories.online_driver(*factories.CENTRO)
    delivery = factories.new_delivery(factories.MerchantFactory(), "contested")
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    token = api_client_for(driver.user)._credentials["HTTP_AUTHORIZATION"]

    async def accept_all(url):
        limits = httpx.Limits(max_connections=ACCEPTS)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            accept = f"/api/v1/offers/{offer.pk}/accept"
            calls = [client.post(accept, headers={"Authorization": token}) for _ in range(ACCEPTS)]
            return await asyncio.gather(*calls)

    env = production_env(settings) | {"DB_POOL_SIZE": "8", "API_THROTTLE_RATE": "100000/min"}
    with running_server(env, tmp_path / "server.log") as url:
        responses = asyncio.run(accept_all(url))

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: ACCEPTS - 1}, codes
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("assigned", driver)
    assert AuditEvent.objects.filter(delivery_id=delivery.pk, type="delivery.assigned").count() == 1
    assert invariants.all_problems() == []


def _round_actions(delivery, offer, first, second, ops_user):
    """Every party that may touch one delivery at the same moment, as the actions the API calls."""
    ops = Actor.ops(ops_user)
    return {
        "accept": lambda: offers.accept_offer(offer.pk, actor=Actor.driver(first)),
        "decline": lambda: offers.decline_offer(offer.pk, actor=Actor.driver(first), reason="busy"),
        "expire": lambda: offers.expire_offer(offer.pk),
        "release": lambda: release_delivery(delivery.pk, actor=Actor.driver(first), reason="flat tyre"),
        "reassign": lambda: reassign_as_ops_ask(delivery.pk, driver_id=None, force=False, actor=ops),
        "force": lambda: reassign_as_ops_ask(delivery.pk, driver_id=second.pk, force=True, actor=ops),
        "cancel": lambda: cancel_delivery(delivery.pk, actor=Actor.merchant(delivery.merchant), reason="gone"),
        "offline": lambda: take_offline(first.pk, actor=Actor.system("stale-sweep"), reason="stale"),
        "dispatch": lambda: dispatch(delivery.pk),
    }


def test_every_action_on_one_delivery_at_once_keeps_the_invariants(zones):
    """Random rounds: a delivery offered (or already assigned) to one driver, a second driver nearby, and a random
    handful of accept, decline, expiry, release, ops reassign (to dispatch or forced), cancel, the driver going
    offline and a dispatch retry, all at the same instant. Only domain refusals may come back; afterwards at most
    one driver has it and every delivery, offer, driver and audit trail agree."""
    rng = random.Random(SEED)
    merchant, ops_user = factories.MerchantFactory(), factories.OpsUserFactory()
    refusals = Counter()
    for round_ in range(ROUNDS):
        first = factories.online_driver(*factories.CENTRO)
        delivery = factories.new_delivery(merchant, f"round-{round_}")
        offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING, driver=first)
        second = factories.online_driver(*factories.east(0.5))
        if rng.random() < 0.4:
            offers.accept_offer(offer.pk, actor=Actor.driver(first))
        Offer.objects.filter(pk=offer.pk).update(expires_at=timezone.now() + timedelta(milliseconds=rng.randint(0, 3)))
        actions = _round_actions(delivery, offer, first, second, ops_user)
        chosen = rng.sample(sorted(actions), rng.randint(2, 5))

        results = run_together(*[actions[name] for name in chosen])

        for name, result in zip(chosen, results, strict=True):
            assert not isinstance(result, Exception) or isinstance(result, DomainError), (SEED, round_, name, result)
            if isinstance(result, DomainError):
                refusals[f"{name}: {result.code}"] += 1
        problems = invariants.all_problems()
        assert problems == [], (SEED, round_, chosen, problems)
        delivery.refresh_from_db()
        assert delivery.driver_id in (None, first.pk, second.pk)
        # Clear the board: these drivers and this delivery take no further part.
        if delivery.status not in ("cancelled",):
            cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="round done")
        for driver in (first, second):
            take_offline(driver.pk, actor=Actor.system("test"), reason="round done")
    assert invariants.all_problems() == []


def test_two_dispatches_racing_for_the_last_driver_make_one_offer(zones):
    merchant = factories.MerchantFactory()
    for round_ in range(max(ROUNDS // 3, 5)):
        waiting = [factories.new_delivery(merchant, f"waiting-{round_}-{n}") for n in range(2)]
        driver = factories.online_driver(*factories.CENTRO)

        results = run_together(*[lambda d=d: dispatch(d.pk) for d in waiting])

        assert not [r for r in results if isinstance(r, Exception)], results
        assert sorted(r.outcome for r in results) == ["no_candidate", "offered"], results
        assert Offer.objects.pending().filter(driver=driver).count() == 1
        assert invariants.all_problems() == []
        for delivery in waiting:
            cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="round done")
        take_offline(driver.pk, actor=Actor.system("test"), reason="round done")


def test_duplicate_beat_ticks_running_every_sweep_twice_at_once_reach_the_same_state(zones):
    """Two beats (or a redelivered task) run each sweep twice at the same instant: every overdue offer expires once,
    each delivery is passed on once, the ladder escalates once, and the board agrees with itself afterwards."""
    from deliveries.tasks import dispatch_waiting_deliveries, expire_overdue_offers, run_escalation_ladder

    merchant = factories.MerchantFactory()
    board = []
    for n in range(6):
        driver = factories.online_driver(*factories.CENTRO)
        delivery = factories.new_delivery(merchant, f"tick-{n}")
        board.append(Offer.objects.get(delivery=delivery, driver=driver, status=OfferStatus.PENDING))
    overdue = timezone.now() - timedelta(seconds=1)
    Offer.objects.filter(pk__in=[o.pk for o in board]).update(expires_at=overdue)
    Delivery.objects.update(unassigned_since=timezone.now() - timedelta(minutes=6))  # due for the ladder's alert

    sweeps = [expire_overdue_offers, run_escalation_ladder, dispatch_waiting_deliveries]
    results = run_together(*[sweep for sweep in sweeps for _ in range(2)])

    assert not [r for r in results if isinstance(r, Exception)], results
    for offer in board:
        assert AuditEvent.objects.filter(subject_id=offer.pk, type="offer.expired").count() == 1
    assert Escalation.objects.count() == Delivery.objects.filter(status__in=["pending", "offered"]).count()
    assert invariants.all_problems() == []


@pytest.mark.parametrize("requested", ["on_break", "offline"])
def test_an_offer_made_while_the_driver_leaves_is_withdrawn_not_left_pending(zones, monkeypatch, requested):
    # Leaving reads the driver's pending offer, then locks the driver: an offer dispatch committed in between (it
    # locks the driver to make it) was left pending on a driver on a break or offline, who could not accept it and
    # was counted as missing it when it expired, while the delivery waited for the deadline.
    merchant = factories.MerchantFactory()
    driver = factories.online_driver(*factories.east(0.3))
    made = []

    def make_offer_elsewhere():
        try:
            made.append(factories.new_delivery(merchant))
        finally:
            connection.close()

    def lock_after_an_offer_was_made(driver_id):
        if not made:
            thread = threading.Thread(target=make_offer_elsewhere)
            thread.start()
            thread.join(timeout=30)
        return lock_driver(driver_id)

    monkeypatch.setattr(availability, "lock_driver", lock_after_an_offer_was_made)
    response = api_client_for(driver.user).post("/api/v1/driver/availability", {"state": requested}, format="json")

    assert response.json()["state"] == requested
    offer = Offer.objects.get(delivery=made[0])
    assert offer.driver == driver
    assert offer.status == OfferStatus.WITHDRAWN
    told = DriverMessage.objects.filter(driver=driver, type__startswith="offer.").values_list("type", flat=True)
    assert list(told) == ["offer.created", "offer.withdrawn"]


def test_the_same_delivery_sent_twice_at_once_is_one_delivery_with_one_offer(zones):
    """A merchant's retry crossing its first request (no Idempotency-Key, the same external_id): both are answered
    with the one delivery, created once (201, then 200), and one driver is offered it once."""
    merchant = factories.MerchantFactory()
    factories.online_driver(*factories.CENTRO)
    factories.online_driver(*factories.east(0.5))
    for round_ in range(max(ROUNDS // 6, 5)):
        payload = factories.delivery_payload(external_id=f"twice-{round_}")

        def send(payload=payload):
            return api_client_for(merchant.user).post("/api/v1/deliveries", payload, format="json")

        answers = run_together(send, send)

        assert sorted(answer.status_code for answer in answers) == [200, 201], answers
        assert answers[0].json()["id"] == answers[1].json()["id"]
        delivery = Delivery.objects.get(merchant=merchant, external_id=f"twice-{round_}")
        assert Offer.objects.filter(delivery=delivery).count() == 1
        assert AuditEvent.objects.filter(delivery_id=delivery.pk, type="delivery.created").count() == 1
        cancel_delivery(delivery.pk, actor=Actor.system("test"), reason="round done")
    assert invariants.all_problems() == []


def test_a_driver_back_online_while_the_stale_sweep_escalates_their_order_is_left_no_escalation(zones, monkeypatch):
    """The sweep set the driver offline; its next step escalates the picked-up delivery they carry. The driver's
    return online runs meanwhile: whichever comes first, no 'driver stale' escalation is left open on a driver who
    is back online with the order. Here the sweep's step runs while the return has read what to close and not yet
    locked the driver (the return waits up to a second for it)."""
    from deliveries.services.reassignment import reassign_after_driver_loss

    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.new_delivery(factories.MerchantFactory())
    app = api_client_for(driver.user)
    assert app.post(f"/api/v1/offers/{factories.pending_offer(delivery).pk}/accept").status_code == 200
    assert app.post(f"/api/v1/deliveries/{delivery.pk}/pickup").status_code == 200
    with monkeypatch.context() as crash:  # the sweep's first step alone: offline, nothing escalated yet
        crash.setattr(availability, "reassign_after_driver_loss", lambda *args, **kwargs: None)
        take_offline(driver.pk, actor=Actor.system("stale-sweep"), reason="stale")

    def escalate():
        reassign_after_driver_loss(delivery.pk, driver_id=driver.pk, actor=Actor.system("stale-sweep"), reason="stale")
        connection.close()

    lock = availability.lock_driver
    sweep = threading.Thread(target=escalate)

    def sweep_step_first(driver_id):
        sweep.start()
        sweep.join(timeout=1)  # done, or waiting for a lock this return holds
        return lock(driver_id)

    monkeypatch.setattr(availability, "lock_driver", sweep_step_first)

    availability.go_online(driver.pk, actor=Actor.driver(driver))

    sweep.join(timeout=10)
    driver.refresh_from_db()
    assert driver.state == "busy"
    assert not Escalation.objects.filter(delivery=delivery).exclude(status="resolved").exists()
