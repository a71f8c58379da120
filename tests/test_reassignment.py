"""ADR-026: deliveries go back to dispatch, keeping their history; after pickup they escalate instead."""

import pytest
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Delivery, EscalationLevel, Offer, OfferStatus
from deliveries.services import ladder, tracking
from deliveries.services.availability import mark_stale_drivers
from deliveries.services.ladder import run_ladder
from deliveries.services.reassignment import DriverRequired, force_assign
from drivers.models import DriverMessage
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def accept_pending(delivery):
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    assert api_client_for(offer.driver.user).post(f"/api/v1/offers/{offer.pk}/accept").status_code == 200
    return offer.driver


def test_a_released_delivery_goes_to_another_driver_and_never_back(merchant_api):
    first = factories.online_driver(*factories.east(0.3))
    second = factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    assert accept_pending(delivery) == first

    response = api_client_for(first.user).post(
        f"/api/v1/deliveries/{delivery.pk}/release", {"reason": "flat tyre"}, format="json"
    )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "offered"  # within the same dispatch cycle
    assert delivery.reassignment_count == 1
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == second
    taken = DriverMessage.objects.get(driver=first, type="delivery.reassigned")
    assert taken.data["id"] == str(delivery.pk) and "flat tyre" in taken.data["reason"]
    first.refresh_from_db()
    assert first.state == "available"
    released = Offer.objects.get(delivery=delivery, driver=first)
    assert released.release_reason == "released: flat tyre"

    # The second declines: the first, who handed it back, is not asked again.
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    api_client_for(second.user).post(f"/api/v1/offers/{offer.pk}/decline", {"reason": "busy"}, format="json")
    assert not Offer.objects.filter(delivery=delivery, status=OfferStatus.PENDING).exists()
    chain = list(
        AuditEvent.objects.for_delivery(delivery.pk)
        .filter(type__startswith="delivery.")
        .values_list("from_state", "to_state")
    )
    assert chain == [
        ("", "pending"),
        ("pending", "offered"),
        ("offered", "assigned"),
        ("assigned", "pending"),
        ("pending", "offered"),
        ("offered", "pending"),
    ]
    no_one = AuditEvent.objects.filter(delivery_id=delivery.pk, type="dispatch.no_candidate").get()
    assert {"driver_id": str(first.pk), "reason": "previous_driver"}.items() <= next(
        e for e in no_one.payload["excluded"] if e["driver_id"] == str(first.pk)
    ).items()


def test_a_picked_up_delivery_cannot_be_released(merchant_api):
    factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    driver = accept_pending(delivery)
    api = api_client_for(driver.user)
    api.post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    response = api.post(f"/api/v1/deliveries/{delivery.pk}/release", {"reason": "tired"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "already_picked_up"


def test_a_driver_gone_stale_before_pickup_loses_the_delivery_to_another(merchant_api, clock, settings):
    settings.RELAY_LOCATION_REDIS_URL = ""
    quiet = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    assert accept_pending(delivery) == quiet
    clock.shift(60)
    other = factories.online_driver(*factories.east(0.9))
    clock.shift(30)
    factories.ping(other, *factories.east(0.9))
    assert mark_stale_drivers() == 1
    delivery.refresh_from_db()
    assert delivery.status == "offered"
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == other
    assert DriverMessage.objects.filter(driver=quiet, type="delivery.reassigned").exists()


def test_a_driver_going_offline_before_pickup_hands_the_delivery_back_to_another(merchant_api):
    """SPEC 2.2 and 3.1: going offline, an accepted delivery not picked up yet goes back for reassignment."""
    leaving = factories.online_driver(*factories.east(0.3))
    other = factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    assert accept_pending(delivery) == leaving

    went = api_client_for(leaving.user).post("/api/v1/driver/availability", {"state": "offline"}, format="json")

    assert went.json()["state"] == "offline"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reassignment_count) == ("offered", 1)
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == other
    assert DriverMessage.objects.filter(driver=leaving, type="delivery.reassigned").exists()


def test_a_driver_gone_stale_holding_a_picked_up_delivery_escalates_it(merchant_api, clock, settings):
    settings.RELAY_LOCATION_REDIS_URL = ""
    quiet = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    api_client_for(quiet.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    factories.online_driver(*factories.east(0.9))
    clock.shift(90)
    mark_stale_drivers()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("picked_up", quiet)  # never reassigned after pickup
    escalation = delivery.escalations.get()
    assert (escalation.level, escalation.reason) == (EscalationLevel.ALERT, "driver_stale")


def picked_up(merchant_api):
    """A delivery its one nearby driver accepted and picked up: (driver, delivery, the driver's app)."""
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    app = api_client_for(driver.user)
    app.post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    return driver, delivery, app


def picked_up_by_a_driver_gone_stale(merchant_api, clock):
    """A delivery its driver picked up, then went quiet with for the stale limit (90 s): escalated by the sweep."""
    driver, delivery, app = picked_up(merchant_api)
    clock.shift(90)
    assert mark_stale_drivers() == 1
    return driver, delivery, app


def test_a_driver_gone_stale_holding_a_picked_up_delivery_who_comes_back_closes_its_escalation(
    merchant_api, ops_api, clock, settings
):
    """SPEC 2.3: escalations close themselves when their cause goes away. The driver's phone lost its signal and
    came back: the driver is online again with the order, and ops no longer need to chase them."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    driver, delivery, app = picked_up_by_a_driver_gone_stale(merchant_api, clock)
    [listed] = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert (listed["reason"], listed["level"]) == ("driver_stale", EscalationLevel.ALERT)

    clock.shift(120)
    back = app.post("/api/v1/driver/availability", {"state": "available"}, format="json")

    assert back.status_code == 200 and back.json()["state"] == "busy"  # their capacity of 1 is the order they carry
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["results"] == []
    escalation = delivery.escalations.get()
    assert (escalation.status, escalation.resolution_note) == (
        "resolved",
        "Closed automatically: the driver is back online.",
    )
    closed = AuditEvent.objects.get(subject_id=escalation.pk, type="escalation.resolved")
    assert (closed.actor_kind, closed.payload["open_seconds"]) == ("driver", 120)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("picked_up", driver)
    assert app.post(f"/api/v1/deliveries/{delivery.pk}/deliver", {}, format="json").status_code == 200


def test_a_driver_back_online_before_the_stale_sweep_escalates_their_order_gets_no_escalation(
    merchant_api, ops_api, clock, settings, monkeypatch
):
    """The stale sweep sets the driver offline, then escalates each picked-up delivery in a transaction of its own.
    A driver whose app came back online in between has the order and is online: an escalation opened then would
    say they were lost, and stay open, since their return (which closes such escalations) has already run."""
    from deliveries.services import availability

    settings.RELAY_LOCATION_REDIS_URL = ""
    _, _, app = picked_up(merchant_api)
    clock.shift(90)
    escalate = availability.reassign_after_driver_loss

    def back_online_first(*args, **kwargs):
        assert app.post("/api/v1/driver/availability", {"state": "available"}, format="json").status_code == 200
        escalate(*args, **kwargs)

    monkeypatch.setattr(availability, "reassign_after_driver_loss", back_online_first)

    assert mark_stale_drivers() == 1

    assert app.get("/api/v1/driver/me").json()["state"] == "busy"
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["results"] == []


def test_a_driver_back_online_leaves_an_overdue_orders_escalation_open_for_that_cause_alone(
    merchant_api, ops_api, clock, settings
):
    """The driver went stale with the order, which then ran past its ETA: their return takes the first cause away,
    not the second. Ops still see the escalation, now for the overdue order and saying nothing of a lost driver."""
    from deliveries import eta

    settings.RELAY_LOCATION_REDIS_URL = ""
    driver, delivery, app = picked_up_by_a_driver_gone_stale(merchant_api, clock)
    due_s = eta.travel_seconds(delivery.distance_km, "bicycle") + eta.DROPOFF_SERVICE_S
    clock.shift(due_s + 15 * 60)
    run_ladder()
    [both] = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert both["reason"] == "driver_stale"
    assert both["detail"].startswith("Dropoff was due at") and both["detail"].endswith("Driver stale while carrying it")

    app.post("/api/v1/driver/availability", {"state": "available"}, format="json")

    [left] = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert left["id"] == both["id"] and left["reason"] == "overdue"
    assert left["detail"].startswith("Dropoff was due at") and "Driver" not in left["detail"]
    gone = AuditEvent.objects.get(subject_id=both["id"], type="escalation.cause_gone")
    assert (gone.actor_kind, gone.payload["causes"]) == ("driver", ["driver_stale"])
    for _ in range(2):  # the sweeps after it see an overdue order, already escalated, and its driver pinging
        clock.shift(60)
        factories.ping(driver, *factories.east(0.2))
        mark_stale_drivers()
        run_ladder()
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["results"] == [left]


def test_a_picked_up_delivery_left_with_a_stale_driver_by_a_crash_is_escalated_by_the_next_sweep(
    merchant_api, ops_api, clock, settings, monkeypatch
):
    """The driver is set offline (stale) and the worker dies before the picked-up delivery it holds is escalated:
    the next stale sweep raises it, once (it once waited for the ladder's overdue rung, an ETA and 15 min later)."""
    from deliveries.services import availability

    settings.RELAY_LOCATION_REDIS_URL = ""
    quiet = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    api_client_for(quiet.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    clock.shift(90)

    def crash(*args, **kwargs):
        raise SystemExit("the worker died here")

    monkeypatch.setattr(availability, "reassign_after_driver_loss", crash)
    with pytest.raises(SystemExit):
        mark_stale_drivers()
    monkeypatch.undo()
    quiet.refresh_from_db()
    assert quiet.state == "offline" and not delivery.escalations.exists()  # the crash's leftovers

    clock.shift(60)
    mark_stale_drivers()
    mark_stale_drivers()
    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["delivery_id"], e["reason"], e["level"]) for e in listed] == [(str(delivery.pk), "driver_stale", 2)]
    opened = AuditEvent.objects.get(delivery_id=delivery.pk, type="escalation.opened")
    assert (opened.actor_kind, opened.actor_id) == ("system", "stale-sweep")

    resolved = ops_api.post(f"/api/v1/ops/escalations/{listed[0]['id']}/resolve", {"note": "called"}, format="json")
    assert resolved.status_code == 200
    clock.shift(60)
    mark_stale_drivers()
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0  # resolved stays resolved


def test_the_third_reassignment_alerts_ops_and_one_past_it_is_left_to_them(merchant_api, ops_api):
    """SPEC 3.1, the zone's default limit of 3: the third hand-back opens a level-2 escalation at once and the
    delivery is still offered to a new driver; a fourth is not dispatched automatically (ops decide)."""
    drivers = [factories.online_driver(*factories.east(0.2 + 0.1 * n)) for n in range(5)]
    delivery = factories.delivery_via_api(merchant_api)

    def release(n):
        holder = accept_pending(delivery)
        answer = api_client_for(holder.user).post(
            f"/api/v1/deliveries/{delivery.pk}/release", {"reason": f"release {n}"}, format="json"
        )
        assert answer.status_code == 200, answer.content

    for n in range(2):
        release(n)
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0

    release(2)
    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["delivery_id"], e["reason"], e["level"]) for e in listed] == [(str(delivery.pk), "reassignments", 2)]
    assert Offer.objects.filter(delivery=delivery, status=OfferStatus.PENDING).exists()  # still dispatched

    release(3)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reassignment_count) == ("pending", 4)
    assert not Offer.objects.filter(delivery=delivery, status=OfferStatus.PENDING).exists()
    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["delivery_id"], e["reason"], e["level"]) for e in listed] == [(str(delivery.pk), "reassignments", 2)]
    assert len({o.driver_id for o in Offer.objects.filter(delivery=delivery)}) == 4
    assert drivers


def test_ops_reassign_past_the_limit_offers_it_to_a_new_driver(merchant_api, ops_api):
    """Ops asking for a new driver override the automatic limit: a 4th reassignment by ops is offered at once."""
    drivers = [factories.online_driver(*factories.east(0.2 + 0.1 * n)) for n in range(5)]
    delivery = factories.delivery_via_api(merchant_api)
    for n in range(3):
        holder = accept_pending(delivery)
        api_client_for(holder.user).post(
            f"/api/v1/deliveries/{delivery.pk}/release", {"reason": f"release {n}"}, format="json"
        )
    holder = accept_pending(delivery)

    response = ops_api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json")

    assert response.status_code == 200
    assert response.json()["status"] == "offered"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reassignment_count, delivery.dispatch_outcome) == ("offered", 4, "offered")
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    assert offer.driver == drivers[4]  # the only one who never had it
    assert offer.driver != holder
    assert DriverMessage.objects.filter(driver=drivers[4], type="offer.created").exists()
    # The third release's escalation closed when the fourth driver took it; ops acting opens none.
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0


def test_ops_reassign_with_a_named_driver_is_a_direct_offer(merchant_api, ops_api):
    factories.online_driver(*factories.east(0.3))
    chosen = factories.online_driver(*factories.east(1.2))
    delivery = factories.delivery_via_api(merchant_api)
    response = ops_api.post(
        f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {"driver_id": str(chosen.pk)}, format="json"
    )
    assert response.status_code == 200
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    assert (offer.driver, offer.kind) == (chosen, "direct")
    withdrawn = Offer.objects.get(delivery=delivery, status=OfferStatus.WITHDRAWN)
    assert withdrawn.withdraw_reason == "reassigned_by_ops"
    told = DriverMessage.objects.get(driver=withdrawn.driver, type="offer.withdrawn").data
    assert (told["reason"], told["cause"]) == ("superseded", "reassigned_by_ops")  # API.md's reasons, and why


def test_ops_reassign_of_an_offered_delivery_offers_it_to_someone_else(merchant_api, ops_api):
    """Ops press "reassign" on a delivery whose driver is sitting on the offer: it goes to the next driver, not
    back to the same one with a fresh deadline (it once did: the nearest driver was simply offered it again)."""
    silent = factories.online_driver(*factories.east(0.3), name="Sid Silent")
    other = factories.online_driver(*factories.east(0.9))
    delivery = factories.delivery_via_api(merchant_api)
    assert factories.pending_offer(delivery).driver == silent

    response = ops_api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "offered"
    offer = factories.pending_offer(delivery)
    assert offer.driver == other
    decided = AuditEvent.objects.get(type="dispatch.decided", payload__offer_id=str(offer.pk))
    assert {"name": "Sid Silent", "reason": "previous_driver"}.items() <= decided.payload["excluded"][0].items()


def test_ops_cannot_reassign_after_pickup_or_to_a_busy_driver(merchant_api, ops_api):
    factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    holder = accept_pending(delivery)
    other = factories.delivery_via_api(merchant_api, external_id="order-2")
    busy = ops_api.post(
        f"/api/v1/ops/deliveries/{other.pk}/reassign", {"driver_id": str(holder.pk), "force": True}, format="json"
    )
    assert busy.status_code == 409
    assert busy.json()["code"] == "driver_unavailable"
    api_client_for(holder.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    late = ops_api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json")
    assert late.status_code == 409
    missing = ops_api.post(
        f"/api/v1/ops/deliveries/{other.pk}/reassign",
        {"driver_id": "00000000-0000-0000-0000-000000000000", "force": True},
        format="json",
    )
    assert missing.status_code == 404


def test_ops_endpoints_are_for_staff_only(merchant_api):
    delivery = factories.delivery_via_api(merchant_api)
    response = merchant_api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json")
    assert response.status_code == 403


@pytest.fixture
def assigned_1_km_away(merchant_api, clock, settings):
    """A delivery accepted by a driver 1 km from pickup; positions straight to the database (no Redis)."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = factories.online_driver(*factories.east(1.0))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    return delivery, driver


def test_a_driver_not_moving_toward_pickup_for_10_minutes_is_escalated(assigned_1_km_away, clock):
    delivery, stuck = assigned_1_km_away
    clock.shift(599)
    factories.ping(stuck, *factories.east(1.0))
    run_ladder()
    assert not delivery.escalations.exists()
    clock.shift(1)
    run_ladder()
    assert delivery.escalations.get().reason == "not_moving"
    run_ladder()
    assert delivery.escalations.count() == 1  # once, not every sweep


def test_a_driver_who_stops_after_some_progress_is_escalated_10_minutes_later(
    merchant_api, clock, django_capture_on_commit_callbacks
):
    """SPEC 2.3: not moving toward pickup for 10 min. A driver who rides from 2 km to 1 km in the first minute and
    then stands still (pinging) has made no progress for 10 minutes at minute 11, whatever they did before."""
    driver = factories.online_driver(*factories.east(2.0))
    delivery = factories.delivery_via_api(merchant_api)
    with django_capture_on_commit_callbacks(execute=True):  # the trail starts at assignment: after commit
        accept_pending(delivery)
    for minute in range(1, 12):  # a ping a minute; the breadcrumbs written as the beat writes them
        clock.shift(60)
        factories.ping(driver, *factories.east(1.0))
        tracking.flush_breadcrumbs()
        if minute == 10:
            run_ladder()
            assert not delivery.escalations.exists(), list(delivery.escalations.values("reason", "detail"))
    run_ladder()
    assert delivery.escalations.get().reason == "not_moving"


def test_a_second_driver_not_moving_after_ops_reassign_is_escalated_too(assigned_1_km_away, clock, ops_api):
    """The first driver's not-moving escalation, resolved by ops who reassigned the delivery, does not stand for
    the next driver: one who sits still for 10 minutes too is escalated again (it once never was)."""
    delivery, first = assigned_1_km_away
    clock.shift(600)
    factories.ping(first, *factories.east(1.0))
    run_ladder()
    escalation = delivery.escalations.get()
    assert escalation.reason == "not_moving"
    clock.shift(60)  # ops look into it
    second = factories.online_driver(*factories.east(1.2))
    assert ops_api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {}, format="json").status_code == 200
    assert accept_pending(delivery) == second
    escalation.refresh_from_db()
    assert escalation.status == "resolved"  # SPEC 2.3: its cause went away when the delivery got assigned

    clock.shift(599)
    factories.ping(second, *factories.east(1.2))
    run_ladder()
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0
    clock.shift(1)
    run_ladder()
    run_ladder()
    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["delivery_id"], e["reason"]) for e in listed] == [(str(delivery.pk), "not_moving")]


def test_a_pickup_while_the_ladder_runs_opens_no_not_moving_escalation(assigned_1_km_away, clock, monkeypatch):
    """The ladder lists the assigned deliveries, then locks each: a pickup committed in between got a "not moving
    toward pickup" escalation, which nothing closes before the door."""
    delivery, driver = assigned_1_km_away
    clock.shift(600)
    factories.ping(driver, *factories.east(1.0))
    lock = ladder.lock_delivery

    def picked_up_meanwhile(delivery_id):
        Delivery.objects.filter(pk=delivery_id).update(status="picked_up", picked_up_at=timezone.now())
        return lock(delivery_id)

    monkeypatch.setattr(ladder, "lock_delivery", picked_up_meanwhile)
    run_ladder()
    assert not delivery.escalations.exists()


def test_a_moving_driver_is_not_escalated(assigned_1_km_away, clock):
    delivery, driver = assigned_1_km_away
    clock.shift(600)
    factories.ping(driver, *factories.east(0.5))
    run_ladder()
    assert not delivery.escalations.exists()


def test_a_picked_up_delivery_15_minutes_past_its_eta_is_escalated(merchant_api, clock):
    from deliveries import eta

    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    api_client_for(driver.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    due_s = eta.travel_seconds(delivery.distance_km, "bicycle") + eta.DROPOFF_SERVICE_S
    clock.shift(due_s + 15 * 60)
    run_ladder()
    assert not delivery.escalations.exists()
    clock.shift(1)
    run_ladder()
    escalation = delivery.escalations.get()
    assert (escalation.reason, escalation.level) == ("overdue", EscalationLevel.ALERT)
    api_client_for(driver.user).post(f"/api/v1/deliveries/{delivery.pk}/deliver", {}, format="json")
    escalation.refresh_from_db()
    assert escalation.status == "resolved"  # delivered: the cause is gone


def test_a_driver_gone_stale_with_an_overdue_delivery_ops_acknowledged_is_told_to_ops(
    merchant_api, ops_api, clock, settings
):
    """Overdue (escalated, and acknowledged by ops: they called the driver), then the driver vanishes with the
    order: the one unresolved escalation already stood at the alert level, so the driver going stale was dropped
    without a word, and ops went on waiting for a driver nobody could reach any more. It is added to the
    escalation they have, once however often the sweeps see it."""
    from deliveries import eta

    settings.RELAY_LOCATION_REDIS_URL = ""
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    api_client_for(driver.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    due_s = eta.travel_seconds(delivery.distance_km, "bicycle") + eta.DROPOFF_SERVICE_S
    clock.shift(due_s + 15 * 60 + 1)
    factories.ping(driver, *factories.east(0.2))
    run_ladder()
    overdue = delivery.escalations.get()
    assert ops_api.post(f"/api/v1/ops/escalations/{overdue.pk}/acknowledge").status_code == 200

    clock.shift(90)  # the driver's pings stop
    assert mark_stale_drivers() == 1
    for _ in range(2):  # the sweeps after it see the same driver offline with it, and the same overdue delivery
        clock.shift(60)
        mark_stale_drivers()
        run_ladder()

    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["reason"], e["level"]) for e in listed] == [("overdue", EscalationLevel.ALERT)]
    assert listed[0]["detail"].startswith("Driver stale while carrying it; Dropoff was due at")
    added = AuditEvent.objects.filter(subject_id=overdue.pk, type="escalation.cause_added")
    assert [e.payload["cause"] for e in added] == ["driver_stale"]


def test_overdue_counts_from_the_eta_at_the_speed_learned_in_the_zone(merchant_api, zones, clock):
    """Where bicycles are learned to be slow at this hour, the trip from pickup is expected to take longer: the
    delivery is overdue 15 minutes after that ETA, not after one at the default speed."""
    from deliveries import eta
    from deliveries.models import TravelSpeed

    hour = eta.hour_of_week(timezone.now(), zones["centro"])
    TravelSpeed.objects.create(zone=zones["centro"], vehicle="bicycle", hour_of_week=hour, trips=100, mean_kmh=5.0)
    driver = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    accept_pending(delivery)
    api_client_for(driver.user).post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    delivery.refresh_from_db()
    learned = eta.learned_speed(zones["centro"], "bicycle", timezone.now())
    default_due_s = eta.travel_seconds(delivery.distance_km, "bicycle") + eta.DROPOFF_SERVICE_S
    learned_due_s = eta.travel_seconds(delivery.distance_km, "bicycle", learned) + eta.DROPOFF_SERVICE_S
    assert learned_due_s > default_due_s + 60
    clock.shift(default_due_s + 15 * 60 + 1)
    run_ladder()
    assert not delivery.escalations.exists()
    clock.shift(learned_due_s - default_due_s)
    run_ladder()
    assert delivery.escalations.get().reason == "overdue"


def test_a_forced_assignment_names_a_driver_whoever_asks(merchant_api, ops_api, ops_user):
    factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    offer = Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)
    with pytest.raises(DriverRequired):
        force_assign(delivery.pk, driver_id=None, actor=Actor.ops(ops_user))
    response = ops_api.post(f"/api/v1/ops/deliveries/{delivery.pk}/reassign", {"force": True}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"driver_id": ["A forced assignment needs a driver."]}
    offer.refresh_from_db()
    assert offer.status == OfferStatus.PENDING  # nothing was withdrawn or dispatched


def test_a_delivery_left_with_an_offline_driver_by_a_crash_is_handed_back_by_the_stale_sweep(merchant_api, monkeypatch):
    """Going offline hands each held delivery back in a transaction of its own, after the driver's: a process that
    dies in between leaves the delivery assigned to an offline driver. The stale sweep repairs it (it once stayed
    so until the ladder's not-moving rung, ten minutes later)."""
    from deliveries.services import availability

    holder = factories.online_driver(*factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api)
    assert accept_pending(delivery) == holder
    other = factories.online_driver(*factories.east(0.9))

    def crash(*args, **kwargs):
        raise SystemExit("the worker died here")

    monkeypatch.setattr(availability, "reassign_after_driver_loss", crash)
    with pytest.raises(SystemExit):
        availability.take_offline(holder.pk, actor=Actor.system("stale-sweep"), reason="stale")
    monkeypatch.undo()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.driver) == ("assigned", holder)  # the crash's leftovers

    mark_stale_drivers()

    delivery.refresh_from_db()
    assert delivery.status == "offered"
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == other
