"""The escalation ladder (SPEC 2.3): it counts from when a delivery could be dispatched, and "no candidate at
all" widens the search and alerts ops at once instead of waiting for the clock."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries.models import Delivery, Escalation, Offer, OfferStatus
from deliveries.services import offers
from deliveries.services.availability import start_break
from deliveries.services.ladder import dispatch_waiting, run_ladder
from drivers import locations
from tests import factories
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def merchant_api(merchant, merchant_api):
    merchant.webhook_url = "https://merchant.invalid/hook"  # so a webhook that should not be sent could be
    merchant.save()
    return merchant_api


def ladder_at(delivery: Delivery, clock, when) -> tuple[int, list]:
    clock.move_to(when)
    run_ladder()
    delivery.refresh_from_db()
    return delivery.escalation_level, list(delivery.escalations.values_list("reason", "level"))


def test_a_delivery_held_for_ready_at_climbs_only_from_when_it_is_dispatchable(merchant_api, clock):
    driver = factories.online_driver(*factories.east(1.0))
    created = timezone.now()
    delivery = factories.delivery_via_api(merchant_api, ready_at=(created + timedelta(minutes=30)).isoformat())
    hold_until = delivery.dispatch_not_before
    assert delivery.status == "pending" and hold_until > created + timedelta(minutes=20)  # just in time
    for minutes in (2, 5, 10, 20):  # the rungs as counted from creation: nothing
        assert ladder_at(delivery, clock, created + timedelta(minutes=minutes)) == (0, [])
    assert not delivery.webhooks.filter(type="delivery.escalated").exists()

    clock.move_to(hold_until)
    factories.ping(driver, *factories.east(1.0))
    assert dispatch_waiting() == 1
    offers.decline_offer(Offer.objects.get(delivery=delivery).pk, actor=Actor.driver(driver), reason="busy")
    assert ladder_at(delivery, clock, hold_until + timedelta(seconds=119)) == (0, [])
    assert ladder_at(delivery, clock, hold_until + timedelta(minutes=2)) == (1, [])
    assert ladder_at(delivery, clock, hold_until + timedelta(minutes=5)) == (2, [("unassigned", 2)])


def test_a_delivery_for_later_with_nobody_in_reach_yet_is_held_not_escalated(merchant_api, clock):
    created = timezone.now()
    delivery = factories.delivery_via_api(merchant_api, ready_at=(created + timedelta(hours=2)).isoformat())
    # Held until even a bicycle at the edge of the 5 km search (~26 min away) would have to set off.
    edge = timedelta(seconds=round(5 * 1.3 / 15 * 3600))
    assert delivery.dispatch_not_before == created + timedelta(hours=2) - edge - timedelta(minutes=2)
    assert (delivery.escalation_level, delivery.escalations.count()) == (0, 0)
    assert ladder_at(delivery, clock, created + timedelta(minutes=30)) == (0, [])
    clock.move_to(delivery.dispatch_not_before)
    dispatch_waiting()  # now it is due, and still nobody: ops hear of it at once
    delivery.refresh_from_db()
    assert list(delivery.escalations.values_list("reason", "level")) == [("no_candidate", 2)]


def test_no_candidate_at_all_widens_the_search_and_alerts_ops_at_once(merchant_api, clock):
    resting = factories.online_driver(*factories.east(0.5), name="Rita Resting")
    start_break(resting.pk, actor=Actor.driver(resting))
    factories.online_driver(*factories.east(0.8), name="Sam Silent", seen_at=timezone.now() - timedelta(minutes=2))
    locations.flush_positions()  # with Redis, the beat flush that puts positions in the database
    delivery = factories.delivery_via_api(merchant_api)

    assert (delivery.status, delivery.escalation_level) == ("pending", 2)
    escalation = delivery.escalations.get()
    assert (escalation.reason, escalation.level, escalation.status) == ("no_candidate", 2, "open")
    assert "Rita Resting (on break)" in escalation.detail and "Sam Silent (stale location)" in escalation.detail
    trail = list(AuditEvent.objects.for_delivery(delivery.pk).values_list("type", flat=True))
    assert trail.index("escalation.warned") < trail.index("dispatch.no_candidate") < trail.index("escalation.opened")
    searched = AuditEvent.objects.get(delivery_id=delivery.pk, type="dispatch.no_candidate").payload
    assert (searched["radius_km"], searched["zones"]) == (7.5, ["centro", "este", "norte"])  # widened
    assert {e["name"]: e["reason"] for e in searched["excluded"]} == {
        "Rita Resting": "on_break",
        "Sam Silent": "stale_location",
    }

    clock.shift(300)
    run_ladder()  # the 5-minute rung has nothing to add
    assert delivery.escalations.get().level == 2
    clock.shift(300)
    run_ladder()  # the 10-minute rung still tells the merchant
    assert delivery.escalations.get().level == 3
    assert delivery.webhooks.filter(type="delivery.escalated").exists()

    arriving = factories.online_driver(*factories.east(0.3))
    assert dispatch_waiting() == 1
    offers.accept_offer(
        Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).pk, actor=Actor.driver(arriving)
    )
    assert delivery.escalations.get().status == "resolved"  # its cause went away


def test_nobody_in_the_zone_but_a_neighbour_in_the_widened_search_gets_the_offer_at_once(merchant_api):
    neighbour = factories.online_driver(*factories.NORTE)  # 3.3 km north, in Norte
    delivery = factories.delivery_via_api(merchant_api)
    assert Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING).driver == neighbour
    assert delivery.escalation_level == 1
    assert not Escalation.objects.exists()
    assert AuditEvent.objects.filter(delivery_id=delivery.pk, type="escalation.warned").exists()


def test_at_two_minutes_the_search_widens_to_neighbouring_zones(merchant_api, clock):
    """SPEC 2.3 level 1: unassigned for 2 min, the search takes in the neighbouring zones (here Norte's driver,
    whom the zone's own search never finds), at once."""
    declining = factories.online_driver(*factories.east(0.5))  # the only driver in Centro says no
    neighbour = factories.online_driver(*factories.NORTE)
    delivery = factories.delivery_via_api(merchant_api)
    offers.decline_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(declining), reason="busy")
    created = timezone.now()

    clock.move_to(created + timedelta(seconds=119))
    factories.ping(neighbour, *factories.NORTE)
    assert (dispatch_waiting(), run_ladder()) == (0, 0)
    assert ladder_at(delivery, clock, created + timedelta(minutes=2)) == (1, [])
    assert (delivery.status, factories.pending_offer(delivery).driver) == ("offered", neighbour)


def test_a_delivery_still_waiting_after_ops_resolve_its_escalation_climbs_again(merchant, clock):
    """Ops resolving the escalation of a delivery that still has no driver is "handled for now": the ladder
    counts again from the resolution (warn, then a new escalation), it does not fall silent at the level it had
    reached (it once did: at critical the ladder never looked at it again)."""
    from deliveries.services.escalations import resolve_escalation

    delivery = factories.new_delivery(merchant, "nobody-around")
    ladder_at(delivery, clock, timezone.now() + timedelta(minutes=11))
    escalation = delivery.escalations.get()
    assert escalation.level == 3

    resolve_escalation(escalation.pk, actor=Actor.ops(factories.OpsUserFactory()), note="called the shop")
    level, _ = ladder_at(delivery, clock, timezone.now() + timedelta(minutes=1))
    assert level == 0  # counted again from the resolution: nothing yet
    level, _ = ladder_at(delivery, clock, timezone.now() + timedelta(minutes=5))

    assert level == 2
    assert delivery.escalations.exclude(status="resolved").get().reason == Escalation.Reason.UNASSIGNED


def test_a_delivery_handed_back_after_a_not_moving_escalation_climbs_the_ladder_again(
    merchant_api, ops_api, clock, settings
):
    """Its driver did not move (escalated, then resolved by ops) and then released it: the new wait for a driver
    alerts ops at 5 minutes like any other (it once did not until 10: the not-moving alert's level was kept)."""
    settings.RELAY_LOCATION_REDIS_URL = ""
    stuck = factories.online_driver(*factories.east(1.0))
    delivery = factories.delivery_via_api(merchant_api)
    offers.accept_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(stuck))
    clock.shift(600)
    factories.ping(stuck, *factories.east(1.0))
    run_ladder()
    not_moving = delivery.escalations.get()
    assert not_moving.reason == "not_moving"
    assert ops_api.post(f"/api/v1/ops/escalations/{not_moving.pk}/resolve", {"note": "called"}).status_code == 200
    factories.online_driver(*factories.east(1.5))  # gets the offer, and sits on it
    released = api_client_for(stuck.user).post(f"/api/v1/deliveries/{delivery.pk}/release", {"reason": "flat"})
    assert released.status_code == 200
    handed_back = timezone.now()

    assert ladder_at(delivery, clock, handed_back + timedelta(seconds=299))[0] == 1
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0
    assert ladder_at(delivery, clock, handed_back + timedelta(minutes=5))[0] == 2
    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["delivery_id"], e["reason"], e["level"]) for e in listed] == [(str(delivery.pk), "unassigned", 2)]


def test_five_offers_without_acceptance_alert_ops_before_the_five_minutes(merchant_api, ops_api):
    """SPEC 2.3: 5 offer rounds without acceptance is level 2, whatever the clock says; the delivery goes on being
    offered."""
    drivers = [factories.online_driver(*factories.east(0.2 * n)) for n in range(1, 7)]
    delivery = factories.delivery_via_api(merchant_api)
    for driver in drivers[:5]:
        offer = factories.pending_offer(delivery)
        assert offer.driver == driver
        assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0
        offers.decline_offer(offer.pk, actor=Actor.driver(driver), reason="busy")

    listed = ops_api.get("/api/v1/ops/escalations?open=true").json()["results"]
    assert [(e["delivery_id"], e["reason"], e["level"]) for e in listed] == [(str(delivery.pk), "offer_rounds", 2)]
    assert listed[0]["detail"] == "5 offers without acceptance"
    assert factories.pending_offer(delivery).driver == drivers[5]  # still offered, to the next one


def test_an_escalation_closes_itself_when_the_delivery_is_cancelled_and_records_how_long_it_was_open(
    merchant_api, ops_api, clock
):
    """SPEC 2.3: escalations close themselves when their cause goes away (here: cancelled) and record how long
    they were open."""
    delivery = factories.delivery_via_api(merchant_api)  # nobody online: ops are alerted at once
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 1
    clock.shift(240)

    cancelled = merchant_api.post(f"/api/v1/deliveries/{delivery.pk}/cancel", {"reason": "shop closed"})

    assert cancelled.status_code == 200
    assert ops_api.get("/api/v1/ops/escalations?open=true").json()["count"] == 0
    (closed,) = ops_api.get("/api/v1/ops/escalations").json()["results"]
    assert (closed["status"], closed["delivery_status"]) == ("resolved", "cancelled")
    resolved = AuditEvent.objects.get(subject_id=closed["id"], type="escalation.resolved")
    assert (resolved.actor_kind, resolved.payload["open_seconds"]) == ("merchant", 240)
