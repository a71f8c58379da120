"""The simulator's pure parts: riding at vehicle speed, seeded choices, places in the service area, and how a
simulated driver reacts to its websocket messages (no server involved)."""

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from simulator.behaviour import Habits, Mix, seeded
from simulator.client import Account
from simulator.driver import DriverSettings, Job, SimDriver
from simulator.geo import Position, ServiceArea, speed_kmh, step_toward

DEMO_ZONES = Path(__file__).parent / "data" / "demo_zones.geojson"
START = Position(38.715, -9.14)


def east_of(origin: Position, km: float) -> Position:
    """A point km east of origin (the step is linear in lng at a fixed lat)."""
    probe = Position(origin.lat, origin.lng + 0.01)
    return Position(origin.lat, origin.lng + 0.01 * km / origin.km_to(probe))


@pytest.mark.parametrize(("vehicle", "kmh"), [("bicycle", 15), ("scooter", 20), ("car", 25)])
def test_one_minute_at_vehicle_speed_covers_speed_over_sixty(vehicle, kmh):
    target = east_of(START, 5)
    position, arrived = step_toward(START, target, speed_kmh=speed_kmh(vehicle), seconds=60)
    assert not arrived
    assert START.km_to(position) == pytest.approx(kmh / 60, rel=0.01)
    assert position.km_to(target) == pytest.approx(5 - kmh / 60, rel=0.01)


def test_riding_one_km_by_car_takes_144_one_second_steps():
    target, position, steps, arrived = east_of(START, 1), START, 0, False
    while not arrived:
        position, arrived = step_toward(position, target, speed_kmh=speed_kmh("car"), seconds=1)
        steps += 1
    assert steps == 144  # 1 km at 25 km/h is 144 s
    assert position == target


def test_a_speedup_is_just_more_simulated_seconds_per_step():
    target = east_of(START, 3)
    fast, _ = step_toward(START, target, speed_kmh=15, seconds=1 * 20)
    assert START.km_to(fast) == pytest.approx(15 * 20 / 3600, rel=0.01)


def test_a_step_past_the_target_stops_on_it():
    target = east_of(START, 0.1)
    position, arrived = step_toward(START, target, speed_kmh=25, seconds=3600)
    assert arrived and position == target


def test_mix_parses_and_normalises_shares():
    assert Mix.parse("accept=8,decline=1,ignore=1") == Mix(0.8, 0.1, 0.1)
    assert Mix.parse("accept=1") == Mix(1.0, 0.0, 0.0)
    for bad in ("accept", "maybe=0.5", "accept=x", "accept=-1", "accept=0"):
        with pytest.raises(ValueError):
            Mix.parse(bad)


def test_mix_choices_replay_with_a_seed_and_follow_the_shares():
    mix = Mix.parse("accept=0.8,decline=0.1,ignore=0.1")
    rng_a, rng_b = seeded(42, "demo-driver-01"), seeded(42, "demo-driver-01")
    run_a = [mix.choose(rng_a) for _ in range(200)]
    assert run_a == [mix.choose(rng_b) for _ in range(200)]
    other = seeded(42, "demo-driver-02")
    assert run_a != [mix.choose(other) for _ in range(200)]
    rng = random.Random(7)
    counts = Counter(mix.choose(rng) for _ in range(10000))
    assert counts["accept"] / 10000 == pytest.approx(0.8, abs=0.02)
    assert counts["decline"] / 10000 == pytest.approx(0.1, abs=0.02)
    assert counts["ignore"] / 10000 == pytest.approx(0.1, abs=0.02)


def test_habits_after_delivery_follow_their_odds():
    habits = Habits(break_chance=0.2, stale_chance=0.1)
    rng = random.Random(3)
    counts = Counter(habits.after_delivery(rng) for _ in range(10000))
    assert counts["break"] / 10000 == pytest.approx(0.2, abs=0.02)
    assert counts["stale"] / 10000 == pytest.approx(0.1, abs=0.02)


def test_service_area_draws_points_inside_its_zones_at_the_asked_distance():
    area = ServiceArea.from_geojson(DEMO_ZONES)
    rng = random.Random(1)
    for _ in range(50):
        pickup = area.random_point(rng)
        assert area.contains(pickup)
        dropoff = area.random_point_near(rng, pickup, min_km=0.5, max_km=3.5)
        assert area.contains(dropoff)
        assert 0.5 <= pickup.km_to(dropoff) <= 3.5
    assert not area.contains(Position(40.0, -3.7))


# --- a driver's reactions to its messages -------------------------------------------------------------
class NoServer:
    username = "demo-driver-01"
    token = "t"

    async def request(self, *args, **kwargs):
        raise AssertionError("no request expected")


def a_driver(mix: str = "accept=1") -> SimDriver:
    settings = DriverSettings(mix=Mix.parse(mix), habits=Habits(), speedup=10)
    return SimDriver(
        NoServer(), password="x", ws_url="ws://x", start=START, rng=random.Random(1), settings=settings, stats=Counter()
    )


def offer_message(offer_id="o1", *, expires_in_s=30):
    from datetime import UTC, datetime, timedelta

    expires = (datetime.now(UTC) + timedelta(seconds=expires_in_s)).isoformat()
    return {"type": "offer.created", "seq": 1, "data": {"id": offer_id, "expires_at": expires}}


async def test_an_offer_is_answered_after_a_moment_and_forgotten_when_withdrawn():
    driver = a_driver()
    await driver.on_message(offer_message())
    assert driver.offer.offer_id == "o1" and driver.offer.answer == "accept"
    assert driver.offer.answer_at > time.monotonic()
    await driver.on_message({"type": "offer.withdrawn", "data": {"offer_id": "o1", "reason": "expired"}})
    assert driver.offer is None


async def test_an_offer_replayed_after_its_deadline_is_not_answered():
    driver = a_driver()
    await driver.on_message(offer_message(expires_in_s=-5))
    assert driver.offer is None


async def test_a_reassigned_job_is_dropped_and_being_set_offline_schedules_coming_back():
    driver = a_driver()
    driver.job = Job("d1", START, east_of(START, 1))
    await driver.on_message({"type": "delivery.reassigned", "data": {"id": "other"}})
    assert driver.job is not None
    await driver.on_message({"type": "delivery.reassigned", "data": {"id": "d1", "reason": "released"}})
    assert driver.job is None
    await driver.on_message({"type": "driver.state", "data": {"state": "offline", "reason": "missed_offers"}})
    assert driver.state == "offline"
    assert driver.clock.online_at is not None


async def test_a_driver_stopped_in_the_instant_a_message_arrives_stops():
    """Stopping the fleet (Ctrl-C) cancels each driver's loop. A cancel that comes in the same turn as a socket
    message must still end it: `asyncio.wait_for` on Python 3.11 returned the message and dropped the cancel, and
    the driver went on, so the fleet never stopped."""
    driver = a_driver()
    ticks = []

    async def tick():
        ticks.append(1)

    driver.tick = tick
    live = asyncio.create_task(driver._live())
    while not ticks:  # its first tick is at once; then it waits on its inbox for up to tick_s (1 s)
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    driver.inbox.put_nowait({"type": "noop", "data": {}})
    live.cancel()
    await asyncio.wait([live], timeout=5)
    assert live.cancelled()


def test_socket_messages_are_taken_once_in_seq_order():
    driver = a_driver()
    for seq in (1, 2, 2, 1, 3):
        driver._received(f'{{"type": "zone.hint", "seq": {seq}, "data": {{}}}}')
    assert driver.last_seq == 3
    assert driver.inbox.qsize() == 3


async def test_a_request_that_failed_without_a_message_is_logged_with_the_errors_kind(caplog):
    """httpx's timeouts carry no message: the fleet's log said "…/driver/locations failed: " and nothing more."""

    def time_out(request):
        raise httpx.ReadTimeout("", request=request)

    stats = Counter()
    async with httpx.AsyncClient(transport=httpx.MockTransport(time_out), base_url="http://relay.test") as http:
        reply = await Account(http, "demo-driver-01", stats).request("POST", "/api/v1/driver/locations", json={})
    assert reply is None and stats["request_errors"] == 1
    assert "demo-driver-01: POST /api/v1/driver/locations failed: ReadTimeout" in caplog.text
