"""Learned ETAs (SPEC 4.1): completed trips teach a zone/vehicle/hour-of-week cell its speed (the default until
20 trips, then a mean shrunk toward it), the zone's recorded errors set the window (P50–P90), the ETA predicted
at assignment is kept and the error is recorded at delivery."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from core.audit import Actor
from core.models import AuditEvent
from deliveries import eta
from deliveries.models import Delivery, TravelSpeed, WebhookDelivery
from deliveries.services.progress import deliver_delivery, pick_up_delivery
from deliveries.services.tracking import refresh_etas
from tests import factories

pytestmark = pytest.mark.django_db
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday; Lisbon is on UTC in November
DROPOFF = (38.72, -9.13)


def _trip_seconds(delivery: Delivery, speed_kmh: float) -> float:
    """How long the ride to the door takes at this speed, plus the handover."""
    return delivery.distance_km * eta.ROAD_FACTOR / speed_kmh * 3600 + eta.DROPOFF_SERVICE_S


def _ride(merchant, rider, clock, n: int, speed_kmh: float) -> Delivery:
    clock.move_to(NOON + timedelta(minutes=n))  # every trip starts in the same hour of the week
    factories.ping(rider, *factories.CENTRO)  # waiting at the pickup
    delivery = factories.assigned_delivery(merchant, rider, external_id=f"trip-{n}", dropoff=DROPOFF)
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    clock.shift(_trip_seconds(delivery, speed_kmh))
    deliver_delivery(delivery.pk, actor=Actor.driver(rider))
    delivery.refresh_from_db()
    return delivery


def test_recorded_trips_move_the_learned_speed_and_the_window(merchant, zones, clock):
    rider = factories.online_driver(*factories.CENTRO, name="Rui Rocha")
    centro = zones["centro"]

    first = _ride(merchant, rider, clock, 0, speed_kmh=30)
    # Predicted at assignment (SPEC default, 15 km/h) and kept; the error (early: negative) recorded at delivery.
    assert first.eta_predicted_at_assignment is not None
    assert first.eta_error_s == round((first.finished_at - first.eta_predicted_at_assignment).total_seconds())
    assert first.eta_error_s < -200
    default_eta = first.eta_predicted_at_assignment - first.assigned_at

    for n in range(1, eta.MIN_TRIPS - 1):
        _ride(merchant, rider, clock, n, speed_kmh=28 + n % 5)
    assert eta.learned_speed(centro, "bicycle", NOON) == eta.DEFAULT_SPEED_KMH["bicycle"]  # 19 trips: not yet
    assert eta.error_window(centro) is None

    _ride(merchant, rider, clock, eta.MIN_TRIPS, speed_kmh=30)
    cell = TravelSpeed.objects.get(zone=centro, vehicle="bicycle", hour_of_week=2 * 24 + 12)
    assert cell.trips == eta.MIN_TRIPS
    assert 28 < cell.mean_kmh < 32
    learned = eta.learned_speed(centro, "bicycle", NOON)
    expected = (cell.trips * cell.mean_kmh + eta.PRIOR_TRIPS * 15) / (cell.trips + eta.PRIOR_TRIPS)
    assert learned == pytest.approx(expected)
    assert 24 < learned < 26
    # Another hour of the week, another vehicle: still the defaults.
    assert eta.learned_speed(centro, "bicycle", NOON + timedelta(hours=3)) == 15
    assert eta.learned_speed(centro, "car", NOON) == 25

    errors = sorted(Delivery.objects.filter(zone=centro).values_list("eta_error_s", flat=True))
    p50, p90 = eta.error_window(centro)
    assert (p50, p90) == (errors[round(0.5 * (len(errors) - 1))], errors[round(0.9 * (len(errors) - 1))])

    clock.move_to(NOON + timedelta(minutes=30))
    factories.ping(rider, *factories.CENTRO)
    learned_delivery = factories.assigned_delivery(merchant, rider, external_id="after", dropoff=DROPOFF)
    learned_eta = learned_delivery.eta_dropoff - learned_delivery.assigned_at
    assert learned_eta < default_eta - timedelta(minutes=1)  # faster trips, earlier ETA
    assert learned_delivery.eta_window_start - learned_delivery.eta_dropoff == timedelta(seconds=p50)
    assert learned_delivery.eta_window_end - learned_delivery.eta_dropoff == timedelta(seconds=max(p90, p50 + 60))
    assert learned_delivery.eta_predicted_at_assignment == learned_delivery.eta_dropoff


def test_pings_refresh_the_eta_and_only_a_move_over_a_minute_is_pushed(
    merchant, zones, clock, django_capture_on_commit_callbacks, monkeypatch, receivers
):
    pushed = []
    monkeypatch.setattr("deliveries.services.tracking.push_to_group", lambda group, envelope: pushed.append(envelope))
    endpoint = receivers()
    merchant.webhook_url = endpoint.url
    merchant.save()
    rider = factories.online_driver(*factories.CENTRO, name="Rui Rocha")
    with django_capture_on_commit_callbacks(execute=True):
        delivery = factories.assigned_delivery(merchant, rider, dropoff=DROPOFF)
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    delivery.refresh_from_db()
    shown = delivery.eta_dropoff
    # Assigned, picked up: each with its ETA (none while it was created and offered: nobody had the link yet).
    assert [m["type"] for m in pushed] == ["status"] * 2
    assert pushed[-1]["data"]["status"] == "picked_up"
    assert pushed[-1]["data"]["eta"]["dropoff"] == delivery.eta_dropoff.isoformat().replace("+00:00", "Z")

    clock.shift(15)
    factories.ping(rider, factories.CENTRO[0] + 0.0002, factories.CENTRO[1])  # ~20 m on: the ETA hardly moves
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh_etas() == 0
    assert len(pushed) == 2
    assert not AuditEvent.objects.filter(delivery_id=delivery.pk, type="delivery.eta_updated").exists()

    clock.shift(15)
    factories.ping(rider, *DROPOFF)  # at the door already: minutes earlier than shown
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh_etas() == 1
    delivery.refresh_from_db()
    assert delivery.eta_dropoff < shown - eta.PUSH_WHEN_MOVED
    assert pushed[-1]["type"] == "eta"
    assert pushed[-1]["data"]["dropoff"] == delivery.eta_dropoff.isoformat().replace("+00:00", "Z")
    sent = WebhookDelivery.objects.get(delivery=delivery, type="delivery.eta_updated")
    assert json.loads(sent.body)["data"] == pushed[-1]["data"]  # the merchant is told the same ETA
    audited = AuditEvent.objects.get(delivery_id=delivery.pk, type="delivery.eta_updated")  # a change: audited
    assert (audited.actor_kind, audited.payload) == ("system", pushed[-1]["data"])
    assert sent.status == "sent" and json.loads(endpoint.requests[-1].body)["type"] == "delivery.eta_updated"
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh_etas() == 0  # no ping since: nothing to recompute


def test_an_eta_that_has_passed_moves_on_when_the_pings_stop(
    merchant, zones, clock, django_capture_on_commit_callbacks, monkeypatch
):
    """Only pings refreshed the ETA: a driver whose app stopped sending left the customer a window that ended in
    the past, for as long as the delivery lasted."""
    pushed = []
    monkeypatch.setattr("deliveries.services.tracking.push_to_group", lambda group, envelope: pushed.append(envelope))
    rider = factories.online_driver(*factories.CENTRO, name="Rui Rocha")
    with django_capture_on_commit_callbacks(execute=True):
        delivery = factories.assigned_delivery(merchant, rider, dropoff=DROPOFF)
        pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    delivery.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh_etas() == 0  # no ping, and the ETA is ahead: nothing to do
    clock.shift((delivery.eta_window_end - timezone.now()).total_seconds() + 60)  # no ping all along
    with django_capture_on_commit_callbacks(execute=True):
        assert refresh_etas() == 1
    delivery.refresh_from_db()
    assert delivery.eta_dropoff > timezone.now() and delivery.eta_window_end > timezone.now()
    assert pushed[-1]["type"] == "eta"
    assert pushed[-1]["data"]["window_end"] == delivery.eta_window_end.isoformat().replace("+00:00", "Z")


def test_etas_are_recomputed_from_pings_every_15_seconds_by_an_editable_schedule():
    """SPEC 4.1: recomputed at most every 15 s from pings (beat's schedule, editable in the admin)."""
    from django_celery_beat.models import PeriodicTask

    schedule = PeriodicTask.objects.get(task="deliveries.tasks.refresh_etas")
    assert (schedule.interval.every, schedule.interval.period, schedule.enabled) == (15, "seconds", True)


def test_speeds_are_learned_by_the_zones_wall_clock_hour_whatever_its_offset(merchant, zones, clock):
    """18:00 in Lisbon is 17:00 UTC in July (summer time) and 18:00 UTC in November: one hour of the week for
    riders and traffic, so a trip ridden at six in July teaches what a dispatch at six in November reads. On the
    autumn change, both 01:30s of the Sunday are the same hour."""
    centro = zones["centro"]
    centro.time_zone = "Europe/Lisbon"
    centro.save()
    rider = factories.online_driver(*factories.CENTRO, name="Rui Rocha")
    clock.move_to(datetime(2026, 7, 15, 17, 0, tzinfo=UTC))  # a Wednesday, 18:00 in Lisbon
    factories.ping(rider, *factories.CENTRO)
    delivery = factories.assigned_delivery(merchant, rider, external_id="july", dropoff=DROPOFF)
    pick_up_delivery(delivery.pk, actor=Actor.driver(rider))
    clock.shift(_trip_seconds(delivery, 20))
    deliver_delivery(delivery.pk, actor=Actor.driver(rider))

    wednesday_six_pm = 2 * 24 + 18
    assert TravelSpeed.objects.get(zone=centro, vehicle="bicycle").hour_of_week == wednesday_six_pm
    assert eta.hour_of_week(datetime(2026, 11, 25, 18, 0, tzinfo=UTC), centro) == wednesday_six_pm
    sunday_half_past_one = [datetime(2026, 10, 25, hour, 30, tzinfo=UTC) for hour in (0, 1)]  # summer, then winter
    assert [eta.hour_of_week(at, centro) for at in sunday_half_past_one] == [6 * 24 + 1] * 2
