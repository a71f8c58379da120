"""SPEC 5, driver KPIs as ops read them (`GET /api/v1/ops/kpis`), on small hand-built days where each figure's
definition matters: utilisation is busy time over time *available for work* (a break is not), the release rate
is per accepted delivery (not per offer), and only the offline events caused by silence are stale."""

from decimal import Decimal

import pytest

from deliveries.models import DeliveryCost
from deliveries.services.availability import mark_stale_drivers
from tests import factories
from tests.conftest import api_client_for
from tests.test_kpis import Timeline

pytestmark = pytest.mark.django_db
DAY = "2026-11-25"  # the clock fixture's day (12:00 UTC); the demo zones keep UTC


class DriverApp:
    """What the driver's phone sends (API.md, Driver)."""

    def __init__(self, driver):
        self.driver, self.api = driver, api_client_for(driver.user)

    def post(self, path: str, body: dict | None = None) -> dict:
        answer = self.api.post(path, body or {}, format="json")
        assert answer.status_code == 200, answer.content
        return answer.json()

    def set_state(self, state: str) -> None:
        self.post("/api/v1/driver/availability", {"state": state})

    def answer_offer(self, delivery, how: str, **body) -> None:
        self.post(f"/api/v1/offers/{factories.pending_offer(delivery).pk}/{how}", body)

    def act(self, delivery, step: str, **body) -> None:
        self.post(f"/api/v1/deliveries/{delivery.pk}/{step}", body)


def _driver_row(ops_api, name: str) -> dict:
    answer = ops_api.get("/api/v1/ops/kpis", {"from": DAY, "to": DAY})
    assert answer.status_code == 200, answer.content
    return next(row for row in answer.json()["drivers"] if row["name"] == name)


def test_utilisation_is_busy_time_over_time_available_or_busy_not_counting_breaks(merchant_api, ops_api, clock):
    """Online at 0; accepts at 20 s, picks up at 400, delivers at 1000; a break from 1200 to 1800 s; the report
    at 2000 s. Busy 980 s; available 20 + 200 + 200 = 420 s; on a break 600 s, which is not time the driver
    could have been used: utilisation 980 / 1400 = 0.7."""
    at = Timeline(clock).at
    app = DriverApp(factories.online_driver(*factories.east(0.5), name="Uma Util"))
    delivery = factories.delivery_via_api(merchant_api, "u1")
    at(20)
    app.answer_offer(delivery, "accept")
    at(400)
    app.act(delivery, "pickup")
    at(1000)
    app.act(delivery, "deliver")
    at(1200)
    app.set_state("on_break")
    at(1800)
    app.set_state("available")
    at(2000)

    row = _driver_row(ops_api, "Uma Util")
    assert row["utilisation"] == 0.7
    assert (row["hours_busy"], row["hours_available"], row["hours_on_break"]) == (
        round(980 / 3600, 2), round(420 / 3600, 2), round(600 / 3600, 2),
    )  # fmt: skip


def test_the_release_rate_is_releases_per_accepted_delivery(merchant_api, ops_api, clock):
    """Three offers: the first declined, the second accepted and delivered, the third accepted and handed back
    (released). One release of two accepted deliveries: 0.5, whatever the declined offer."""
    at = Timeline(clock).at
    app = DriverApp(factories.online_driver(*factories.east(0.5), name="Rui Release"))
    declined = factories.delivery_via_api(merchant_api, "r1")
    at(10)
    app.answer_offer(declined, "decline", reason="too_far")
    at(20)
    delivered = factories.delivery_via_api(merchant_api, "r2")
    at(30)
    app.answer_offer(delivered, "accept")
    at(300)
    app.act(delivered, "pickup")
    at(900)
    app.act(delivered, "deliver")
    factories.ping(app.driver, *factories.east(0.5))
    released = factories.delivery_via_api(merchant_api, "r3")
    at(910)
    app.answer_offer(released, "accept")
    at(960)
    app.act(released, "release", reason="flat tyre")
    at(1000)

    row = _driver_row(ops_api, "Rui Release")
    assert (row["offers_received"], row["accepted"], row["declined"], row["releases"]) == (3, 2, 1, 1)
    assert row["release_rate"] == 0.5


def test_only_going_offline_for_silence_counts_as_a_stale_event(zones, ops_api, clock):
    """The driver goes offline by choice at 100 s, online again at 200 s and then stops sending locations: set
    offline as stale at 400 s. Two offline events, one of them stale."""
    at = Timeline(clock).at
    app = DriverApp(factories.online_driver(*factories.east(0.5), name="Sol Stale"))
    at(100)
    app.set_state("offline")
    at(200)
    app.set_state("available")
    factories.ping(app.driver, *factories.east(0.5))
    at(400)
    assert mark_stale_drivers() == 1
    at(500)

    row = _driver_row(ops_api, "Sol Stale")
    assert (row["offline_events"], row["stale_events"]) == (2, 1)


def test_the_report_reads_a_days_drivers_in_the_same_queries_however_many_worked(merchant_api, ops_api, clock):
    """Today's driver figures are computed live (no rollup yet): one read per figure and driver made a dashboard
    of 200 drivers 2,000 queries. Each driver here gets an offer, answers it and goes offline."""

    def a_day_of(count: int, ref: str) -> None:
        for n in range(count):
            app = DriverApp(factories.online_driver(*factories.east(0.5), name=f"{ref} {n}"))
            app.answer_offer(factories.delivery_via_api(merchant_api, f"{ref}-{n}"), "decline", reason="busy")
            app.set_state("offline")

    def queries_of_the_report() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as read:
            assert ops_api.get("/api/v1/ops/kpis", {"from": DAY, "to": DAY}).status_code == 200
        return len(read)

    a_day_of(2, "few")
    with_two = queries_of_the_report()
    a_day_of(6, "more")
    assert queries_of_the_report() == with_two
    assert _driver_row(ops_api, "more 5")["offers_received"] == 1


def test_each_driver_of_a_day_keeps_their_own_figures(zones, merchant_api, ops_api, clock):
    """A day's drivers are read together, per home zone: each row must still hold that driver's releases, offline
    events, deliveries and pay, and the idle pay of their own zone. Ana delivers (available 0-20 s and 180-280 s);
    Rui takes the next delivery, hands it back and goes silent (stale); Nuno, of Norte, which pays idle time at
    another rate, is online from 220 s."""
    norte = zones["norte"]
    norte.pay_waiting_per_minute = Decimal("0.50")
    norte.save(update_fields=["pay_waiting_per_minute"])
    at = Timeline(clock).at
    ana = DriverApp(factories.online_driver(*factories.east(0.5), name="Ana Batch"))
    delivered = factories.delivery_via_api(merchant_api, "b1")
    at(20)
    ana.answer_offer(delivered, "accept")
    rui = DriverApp(factories.online_driver(*factories.east(0.5), name="Rui Batch"))
    released = factories.delivery_via_api(merchant_api, "b2")  # Ana is at capacity: Rui is offered it
    at(30)
    rui.answer_offer(released, "accept")
    at(40)
    rui.act(released, "release", reason="flat tyre")
    assert (
        merchant_api.post(f"/api/v1/deliveries/{released.pk}/cancel", {"reason": "x"}, format="json").status_code == 200
    )
    at(100)
    ana.act(delivered, "pickup")
    at(180)
    ana.act(delivered, "deliver")
    at(220)
    factories.ping(ana.driver, *factories.east(0.5))
    factories.online_driver(*factories.NORTE, name="Nuno Batch", home_zone=norte)
    at(280)
    assert mark_stale_drivers() == 1  # Rui, silent since 40 s

    rows = {name: _driver_row(ops_api, name) for name in ("Ana Batch", "Rui Batch", "Nuno Batch")}
    figures = ("releases", "offline_events", "stale_events", "deliveries_completed")
    assert {name: tuple(row[f] for f in figures) for name, row in rows.items()} == {
        "Ana Batch": (0, 0, 0, 1),
        "Rui Batch": (1, 1, 1, 0),
        "Nuno Batch": (0, 0, 0, 0),
    }
    ana_pay = DeliveryCost.objects.get(delivery=delivered).driver_pay
    assert Decimal(rows["Ana Batch"]["earnings"]) == ana_pay + Decimal("0.20")  # 2 minutes idle at Centro's 0.10
    assert Decimal(rows["Nuno Batch"]["earnings"]) == Decimal("0.50")  # 1 minute idle at Norte's 0.50
