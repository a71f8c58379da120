"""The replay simulator (SPEC 6): a recorded day played again against the real dispatch code, in a scratch database,
under the zones' policy as it is and as changed, compared by KPIs before the change is made in production."""

import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from analytics.management.commands.replay import mean_of, recorded, run_in_scratch, table
from analytics.replay.recording import record_day
from analytics.retention import purge_rolled_up_snapshots
from analytics.rollup import roll_up_day
from core.models import AuditEvent
from deliveries.models import Delivery
from deliveries.services.balancing import take_zone_snapshots
from drivers.models import Driver
from tests import factories
from tests.conftest import api_client_for
from zones.selectors import zone_for_point

pytestmark = pytest.mark.django_db

DAY = date(2026, 11, 25)  # the clock fixture's day; the demo zones keep UTC


def a_recorded_day(merchant_api, clock, rider: Driver | None = None) -> Driver:
    """One rider in centro takes the day's three orders, answering each offer in 8 s, and goes home later."""
    rider = rider or factories.online_driver(*factories.east(0.3))
    app = api_client_for(rider.user)
    for n in range(1, 4):
        an_order_taken(merchant_api, clock, rider, app, f"order-{n}", riding_s=600)
        clock.shift(900)
    clock.shift(2 * 3600)
    assert app.post("/api/v1/driver/availability", {"state": "offline"}, format="json").status_code == 200
    return rider


def an_order_taken(merchant_api, clock, rider: Driver, app, external_id: str, *, riding_s: int, **payload) -> None:
    """The merchant sends an order near the rider, who accepts it in 8 s, picks it up 5 minutes later and delivers
    it `riding_s` after that."""
    factories.ping(rider, *factories.east(0.3))
    delivery = factories.delivery_via_api(merchant_api, external_id, **payload)
    clock.shift(8)
    assert app.post(f"/api/v1/offers/{factories.pending_offer(delivery).pk}/accept").status_code == 200
    clock.shift(300)
    app.post(f"/api/v1/deliveries/{delivery.pk}/pickup")
    clock.shift(riding_s)
    app.post(f"/api/v1/deliveries/{delivery.pk}/deliver", {}, format="json")


def replay(*args) -> str:
    out = io.StringIO()
    call_command("replay", "--day", DAY.isoformat(), *args, stdout=out)
    return out.getvalue()


def test_a_timeout_shorter_than_riders_take_to_answer_shows_the_day_lost_before_it_is_set(merchant_api, clock):
    a_recorded_day(merchant_api, clock)
    before = (Delivery.objects.count(), AuditEvent.objects.count(), Driver.objects.count())

    runs = json.loads(replay("--zone", "centro", "--set", "offer_timeout_s=5", "--json"))

    recorded, replayed, changed = runs["recorded"], runs["replayed"], runs["changed"]
    assert (recorded["delivered"], recorded["first_offer_success_rate"]) == (3, 1.0)
    # The same orders and rider under today's policy: the day as it was.
    assert (replayed["deliveries"], replayed["delivered"], replayed["still_open"]) == (3, 3, 0)
    assert (replayed["first_offer_success_rate"], replayed["time_to_assign_p50_s"]) == (1.0, 8.0)
    # Offers that expire in 5 s, to a rider who answers in 8: each one expires, and after three the rider is set
    # offline (SPEC 2.1); nobody delivers anything.
    assert (changed["deliveries"], changed["delivered"], changed["acceptance_rate"]) == (3, 0, 0.0)
    assert changed["escalations_by_level"]["2"] >= 1
    # The replay ran elsewhere: nothing here was written.
    assert (Delivery.objects.count(), AuditEvent.objects.count(), Driver.objects.count()) == before
    # What the command prints without --json: the same runs side by side.
    lines = table(record_day(DAY, ["centro"]), {"*": {"offer_timeout_s": "5"}}, runs).splitlines()
    assert lines[0] == "Replay of 2026-11-25 (centro): 3 deliveries, 1 driver; changed: offer_timeout_s=5"
    assert lines[2].split() == ["recorded", "replayed", "changed"]
    assert ["delivered", "3", "3", "0"] in [line.split() for line in lines]
    assert ["first", "offer", "accepted", "1.0", "1.0", "0.0"] in [line.split() for line in lines]


def test_a_break_the_replay_puts_off_while_the_rider_carries_an_order_is_not_taken_after_its_recorded_end(
    merchant_api, clock
):
    """The replay may give a rider an order when the recording had them free: a break recorded then waits until
    they are free, but not past the break's recorded end, or they would sit on that break for the rest of the day
    (its end refused: they were not on a break then) and the day's later orders would find nobody."""
    a_recorded_day(merchant_api, clock)
    recording = record_day(DAY, ["centro"])
    [rider] = recording["drivers"]
    first_order = datetime.fromisoformat(recording["deliveries"][0]["at"])
    # A minute's break while the first order is in the bag (its ride alone is longer).
    rider["moves"][1:1] = [
        [(first_order + timedelta(minutes=1)).isoformat(), "on_break"],
        [(first_order + timedelta(minutes=2)).isoformat(), "end_break"],
    ]

    replayed = run_in_scratch(recording, {}, seed=1)

    assert (replayed["delivered"], replayed["still_open"]) == (3, 0)


def test_a_rider_on_a_break_at_midnight_is_online_in_the_replay_from_the_end_of_their_break(merchant_api, clock):
    """The day starts with the rider on a break they took the evening before: in the replay they are on that break
    (online, on a shift) and end it when they did, and take the day's orders."""
    clock.move_to(datetime(2026, 11, 24, 23, 0, tzinfo=UTC))
    rider = factories.online_driver(*factories.east(0.3))
    app = api_client_for(rider.user)
    clock.shift(30 * 60)
    assert app.post("/api/v1/driver/availability", {"state": "on_break"}, format="json").status_code == 200
    clock.move_to(datetime(2026, 11, 25, 11, 55, tzinfo=UTC))
    assert app.post("/api/v1/driver/availability", {"state": "available"}, format="json").status_code == 200
    clock.shift(5 * 60)
    a_recorded_day(merchant_api, clock, rider)

    runs = json.loads(replay("--zone", "centro", "--json"))

    assert (runs["recorded"]["delivered"], runs["replayed"]["delivered"]) == (3, 3)


def test_the_replay_counts_nothing_in_the_metrics_of_the_deployment(merchant_api, clock):
    """/metrics sums the files every process leaves in the metrics folder (its own, or the default one): the
    replay's offers and assignments never happened and must not show there."""
    a_recorded_day(merchant_api, clock)
    folders = {Path(settings.RELAY_METRICS_DIR), settings.BASE_DIR / "var" / "metrics"}
    before = {folder: set(folder.glob("*")) for folder in folders}  # none there yet: none after

    replay("--zone", "centro")

    assert {folder: set(folder.glob("*")) for folder in folders} == before


def test_a_rider_who_drops_an_order_off_outside_every_zone_rides_back_for_the_next(merchant_api, clock):
    """An order is dropped off outside every zone (and beyond the search radius): in the replay as in life the
    rider comes back and takes the next order, instead of staying where they left the first one all day."""
    outside = (38.65, -9.14)
    assert zone_for_point(*outside) is None
    rider = factories.online_driver(*factories.east(0.3))
    app = api_client_for(rider.user)
    for n, dropoff in ((1, outside), (2, (38.72, -9.13))):
        an_order_taken(merchant_api, clock, rider, app, f"order-{n}", riding_s=1500, dropoff=dropoff)
        clock.shift(3600)

    runs = json.loads(replay("--zone", "centro", "--json"))

    assert (runs["recorded"]["delivered"], runs["replayed"]["delivered"]) == (2, 2)


def test_a_rider_set_offline_for_missed_offers_comes_back_while_their_day_lasts(merchant_api, clock):
    """Under a 5 s timeout the rider, who answers in 8, misses three offers and is set offline (SPEC 2.1); still on
    shift in their recorded day, they come back five minutes later and are offered the next orders. Left offline
    for good, the replay made any change that lets offers expire look as if it sent the fleet home."""
    rider = factories.online_driver(*factories.east(0.3))
    app = api_client_for(rider.user)
    for n in range(1, 6):
        an_order_taken(merchant_api, clock, rider, app, f"order-{n}", riding_s=600)
        clock.shift(900)
    clock.shift(2 * 3600)
    app.post("/api/v1/driver/availability", {"state": "offline"}, format="json")

    changed = json.loads(replay("--zone", "centro", "--set", "offer_timeout_s=5", "--json"))["changed"]

    assert (changed["deliveries"], changed["offers"], changed["delivered"]) == (5, 5, 0)


def test_a_neighbours_rider_who_took_the_zones_orders_is_replayed_with_it(merchant_api, clock, zones):
    """Replaying one zone keeps the riders who served it that day, wherever their home zone is."""
    rider = factories.online_driver(*factories.east(0.3), home_zone=zones["norte"])
    a_recorded_day(merchant_api, clock, rider)

    runs = json.loads(replay("--zone", "centro", "--json"))

    assert (runs["recorded"]["delivered"], runs["replayed"]["delivered"]) == (3, 3)


def test_orders_a_zone_no_longer_takes_are_counted_as_refused_not_lost(merchant_api, clock, zones):
    """The zone was made inactive after the day: its orders cannot be sent in again, and the replay says how many."""
    a_recorded_day(merchant_api, clock)
    type(zones["centro"]).objects.filter(code="centro").update(active=False)

    runs = json.loads(replay("--zone", "centro", "--json"))

    assert (runs["replayed"]["deliveries"], runs["replayed"]["refused"]) == (0, 3)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--set", "offer_timeout"], "--set 'offer_timeout': expected [ZONE.]FIELD=VALUE"),
        (
            ["--set", "polygon=[]"],
            "'polygon' is not a zone policy field; one of: break_limit_s, busy_pressure, critical_pressure",
        ),
        (
            ["--set", "offer_timeout_s=2"],
            "zone centro: offer_timeout_s: Ensure this value is greater than or equal to 5.",
        ),
        (["--set", "offer_timeout_s=soon"], "offer_timeout_s: “soon” value must be an integer."),
        (["--set", "escalation_alert_s=60"], "escalation_alert_s: The alert must come after the warning."),
        (["--set", "sul.offer_timeout_s=20"], "--set: no zone 'sul'"),
        (["--zone", "sul"], "no zone sul"),
    ],
)
def test_a_change_the_console_would_refuse_is_refused_before_anything_runs(merchant_api, clock, args, said):
    a_recorded_day(merchant_api, clock)
    with pytest.raises(CommandError) as refused:
        replay(*args)
    assert said in str(refused.value)


def test_a_day_without_deliveries_says_so(zones):
    with pytest.raises(CommandError, match="no deliveries on 2026-11-25 in centro, este, norte"):
        replay()


def test_the_scratch_run_leaves_a_database_with_anything_in_it_as_it_was(tmp_path):
    """`replay_run` pointed at a database that is not a fresh scratch one (by hand, with the environment of a
    deployment) refuses it before migrating it or writing to it."""
    database = tmp_path / "theirs.sqlite3"
    with sqlite3.connect(database) as theirs:
        theirs.execute("CREATE TABLE invoices (id integer)")
    (tmp_path / "recording.json").write_text("{}")
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{database}", "REDIS_URL": "", "DEBUG": "1"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "replay_run"]
    command += [str(tmp_path / "recording.json"), str(tmp_path / "result.json")]

    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    assert done.returncode == 1 and "the replay runs only in an empty database" in done.stderr
    with sqlite3.connect(database) as theirs:
        assert theirs.execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]


def test_the_scratch_run_refuses_a_database_that_holds_zones(zones, tmp_path):
    (tmp_path / "recording.json").write_text("{}")
    with pytest.raises(CommandError, match="the replay runs only in an empty database"):
        call_command("replay_run", str(tmp_path / "recording.json"), str(tmp_path / "result.json"))


def test_several_seeds_give_each_run_the_mean_of_the_same_seeds(merchant_api, clock):
    a_recorded_day(merchant_api, clock)

    runs = json.loads(replay("--zone", "centro", "--set", "offer_timeout_s=5", "--seeds", "2", "--seed", "7", "--json"))

    # Both policies drawn with the same seeds, so they differ by the policy, not by the draws.
    assert sorted(runs["by_seed"]["replayed"]) == sorted(runs["by_seed"]["changed"]) == ["7", "8"]
    for name in ("replayed", "changed"):
        seeds = runs["by_seed"][name].values()
        assert runs[name]["delivered"] == statistics.fmean(one["delivered"] for one in seeds)
    assert (runs["replayed"]["delivered"], runs["changed"]["delivered"]) == (3, 0)


def test_a_replays_figures_over_several_seeds_are_their_mean_with_their_range():
    recorded = {"delivered": 3, "cost_per_delivery": "4.00", "escalations_by_level": {"1": 0, "2": 0, "3": 0}}
    seed_1 = {
        "delivered": 3,
        "cost_per_delivery": "4.00",
        "escalations_by_level": {"2": 1},
        "time_to_assign_p50_s": None,
    }
    seed_2 = {"delivered": 2, "cost_per_delivery": "4.25", "escalations_by_level": {"2": 2, "3": 1}}
    seed_2["time_to_assign_p50_s"] = 12.5
    seed_1["acceptance_rate"], seed_2["acceptance_rate"] = 0.8, 0.8668
    seed_1["time_to_assign_p90_s"], seed_2["time_to_assign_p90_s"] = 14.5, 17.0
    by_seed = {"replayed": {1: seed_1, 2: seed_2}}
    runs = {"recorded": recorded, "replayed": mean_of([seed_1, seed_2])}

    assert runs["replayed"] == {
        "delivered": 2.5,  # a count's mean to one place
        "cost_per_delivery": "4.12",  # money to the cent, rounded as the KPIs round it (half to even)
        "escalations_by_level": {"2": 1.5, "3": 0.5},  # a level a seed never reached is its 0
        "time_to_assign_p50_s": 12.5,  # a seed with no figure adds none
        "acceptance_rate": 0.8334,  # to the places of its figures
        "time_to_assign_p90_s": 15.8,
    }
    recording = {"day": "2026-11-25", "zones": ["centro"], "deliveries": [{}] * 3, "drivers": [{}]}

    lines = table(recording, {}, runs, by_seed).splitlines()

    assert lines[0] == "Replay of 2026-11-25 (centro): 3 deliveries, 1 driver; 2 seeds each"
    rows = [line.split() for line in lines]
    assert ["delivered", "3", "2.5", "(2–3)"] in rows
    assert ["cost", "per", "delivery", "4.00", "4.12", "(4.00–4.25)"] in rows
    assert ["escalations", "level", "3", "0", "0.5", "(0–1)"] in rows
    assert ["time", "to", "assign", "p50", "(s)", "-", "12.5"] in rows


def test_a_day_past_the_snapshots_retention_is_recorded_as_its_rollup_kept_it(merchant_api, clock, zones):
    a_recorded_day(merchant_api, clock)
    centro = zones["centro"]
    take_zone_snapshots(now=timezone.now())
    roll_up_day(centro, DAY)
    before = recorded([centro], DAY)
    assert before["delivered"] == 3 and before["mean_surge_multiplier"] is not None

    clock.shift(100 * 24 * 3600)
    assert purge_rolled_up_snapshots() >= 1

    assert recorded([centro], DAY) == before
