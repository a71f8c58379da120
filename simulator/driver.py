"""One simulated driver: the driver app's behaviour over REST and `/ws/driver/`.

A single "brain" coroutine owns the driver's state and handles, in order, websocket messages (fed by a reader
task through a queue) and clock ticks (move, ping, answer offers, breaks), so there are no races in here."""

import asyncio
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import websockets

from simulator import behaviour
from simulator.behaviour import Habits, Mix
from simulator.client import Account
from simulator.geo import Position, speed_kmh, step_toward

log = logging.getLogger("relay.simulation")

RETRY_S = 5.0  # after a failed state change (server unreachable, a conflict), try again this much later


@dataclass
class DriverSettings:
    mix: Mix
    habits: Habits
    speedup: float = 1.0
    tick_s: float = 1.0
    ping_every_s: float = 4.0


@dataclass
class Job:
    delivery_id: str
    pickup: Position
    dropoff: Position
    picked_up: bool = False
    release_after_km: float | None = None  # hand the job back after riding this far toward pickup
    ridden_km: float = 0.0
    wait_until: float = 0.0  # at pickup or dropoff: service time (monotonic seconds)


@dataclass
class PendingOffer:
    offer_id: str
    answer: str
    answer_at: float


@dataclass
class Clock:
    """Monotonic deadlines of the driver's timed states."""

    break_until: float | None = None
    stale_until: float | None = None
    online_at: float | None = None
    next_ping: float = 0.0
    last_tick: float = field(default_factory=time.monotonic)


def _place(data: dict) -> Position:
    return Position(float(data["lat"]), float(data["lng"]))


def job_from(delivery: dict) -> Job:
    return Job(
        delivery_id=str(delivery["id"]),
        pickup=_place(delivery["pickup"]),
        dropoff=_place(delivery["dropoff"]),
        picked_up=delivery.get("status") == "picked_up",
    )


class SimDriver:
    def __init__(self, account: Account, *, password: str, ws_url: str, start: Position, rng: random.Random,
                 settings: DriverSettings, stats: Counter):  # fmt: skip
        self.account = account
        self.password = password
        self.ws_url = ws_url
        self.position = start
        self.rng = rng
        self.settings = settings
        self.stats = stats
        self.vehicle = "bicycle"
        self.state = "offline"  # as last told by the server
        self.job: Job | None = None
        self.offer: PendingOffer | None = None
        self.clock = Clock()
        self.points: list[dict] = []
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.last_seq = 0
        self.connected = asyncio.Event()

    @property
    def name(self) -> str:
        return self.account.username

    async def run(self) -> None:
        if not await self.account.login(self.password):
            log.error("%s: cannot log in; this driver sits out", self.name)
            return
        reader = asyncio.create_task(self._read_socket(), name=f"{self.name}-socket")
        try:
            # Listen before going online, so no offer pushed meanwhile is missed.
            try:
                async with asyncio.timeout(10):
                    await self.connected.wait()
            except TimeoutError:
                log.warning("%s: websocket not connected yet; going online anyway", self.name)
            try:
                await self._catch_up()  # schedules going online right away when offline or on a break
            except Exception:
                self.stats["driver_errors"] += 1
                log.exception("%s: could not read its state; starting from offline", self.name)
                self.clock.online_at = time.monotonic()
            await self._live()
        finally:
            reader.cancel()

    # --- the brain ------------------------------------------------------------------------------------
    async def _live(self) -> None:
        next_tick = time.monotonic()
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that comes as a message does,
            # and the driver (so the fleet) would not stop.
            try:
                async with asyncio.timeout(max(0.0, next_tick - time.monotonic())):
                    message = await self.inbox.get()
            except TimeoutError:
                message = None
            try:
                if message is not None:
                    await self.on_message(message)
                    continue
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad step must not end the driver
                self.stats["driver_errors"] += 1
                log.exception("%s: step failed", self.name)
            next_tick = max(next_tick + self.settings.tick_s, time.monotonic())

    async def on_message(self, message: dict) -> None:
        kind, data = message.get("type"), message.get("data") or {}
        if kind == "offer.created":
            self._consider_offer(data)
        elif kind == "offer.withdrawn":
            if self.offer and self.offer.offer_id == str(data.get("offer_id")):
                self.offer = None
        elif kind in ("delivery.reassigned", "delivery.cancelled"):
            if self.job and self.job.delivery_id == str(data.get("id")):
                log.info("%s: %s %s (%s)", self.name, kind, self.job.delivery_id, data.get("reason", ""))
                self.job = None
        elif kind == "delivery.assigned":
            if self.job is None and data.get("id"):
                self.job = job_from(data)
        elif kind == "driver.state":
            self._told_state(data)

    def _told_state(self, data: dict) -> None:
        self.state = data.get("state", self.state)
        # Every availability change is announced; only one the driver did not ask for needs a reaction.
        if self.state == "offline" and data.get("reason") != "driver":
            self.stats["set_offline"] += 1
            log.info("%s: set offline by the server (%s)", self.name, data.get("reason", ""))
            self.offer = None
            if self.job and not self.job.picked_up:
                self.job = None  # handed back by the server
            low, high = self.settings.habits.back_online_real_s
            self.clock.online_at = time.monotonic() + self.rng.uniform(low, high)

    def _consider_offer(self, data: dict) -> None:
        self.stats["offers"] += 1
        expires_at = data.get("expires_at")
        if expires_at and datetime.fromisoformat(expires_at) <= datetime.now(UTC):
            return  # replayed after a reconnect: too late to answer
        answer = self.settings.mix.choose(self.rng)
        self.stats[f"offers_{answer}"] += 1
        low, high = self.settings.habits.answer_real_s
        self.offer = PendingOffer(str(data["id"]), answer, time.monotonic() + self.rng.uniform(low, high))

    async def tick(self) -> None:
        now = time.monotonic()
        sim_seconds = (now - self.clock.last_tick) * self.settings.speedup
        self.clock.last_tick = now
        if self.clock.stale_until is not None:
            if now < self.clock.stale_until:
                return  # the app has lost its connection: no pings, no answers
            self.clock.stale_until = None
            log.info("%s: back from being stale", self.name)
            await self._catch_up()
        if self.clock.online_at is not None and now >= self.clock.online_at:
            self.clock.online_at = None if await self._set_state("available") else now + RETRY_S
        if self.clock.break_until is not None and now >= self.clock.break_until:
            self.clock.break_until = None if await self._set_state("available") else now + RETRY_S
        if self.offer is not None and self.offer.answer != "ignore" and now >= self.offer.answer_at:
            await self._answer(self.offer)
        if self.job is not None:
            await self._ride(sim_seconds, now)
        if self.state != "offline" or self.job is not None:
            self.points.append(self._point())
        if now >= self.clock.next_ping and self.points:
            await self._ping()
            self.clock.next_ping = now + self.settings.ping_every_s

    # --- actions ------------------------------------------------------------------------------------
    async def _answer(self, offer: PendingOffer) -> None:
        self.offer = None
        if offer.answer == "decline":
            await self.account.request(
                "POST", f"/api/v1/offers/{offer.offer_id}/decline", json={"reason": behaviour.decline_reason(self.rng)}
            )
            return
        reply = await self.account.request("POST", f"/api/v1/offers/{offer.offer_id}/accept")
        if reply is not None and reply.ok:
            self.stats["accepted"] += 1
            self.state = "busy"
            self.job = job_from(reply.body)
            if self.settings.habits.releases(self.rng):
                self.job.release_after_km = self.position.km_to(self.job.pickup) / 2

    async def _ride(self, sim_seconds: float, now: float) -> None:
        job = self.job
        if now < job.wait_until:
            return
        target = job.dropoff if job.picked_up else job.pickup
        before = self.position
        self.position, arrived = step_toward(before, target, speed_kmh=speed_kmh(self.vehicle), seconds=sim_seconds)
        job.ridden_km += before.km_to(self.position)
        if job.release_after_km is not None and not job.picked_up and job.ridden_km >= job.release_after_km:
            await self._release(job)
            return
        if not arrived:
            return
        if job.wait_until == 0.0:  # just arrived: the service time starts (handing over takes a moment)
            low, high = self.settings.habits.service_s
            job.wait_until = now + self.rng.uniform(low, high) / self.settings.speedup
            return
        job.wait_until = 0.0
        if not job.picked_up:
            reply = await self.account.request("POST", f"/api/v1/deliveries/{job.delivery_id}/pickup")
            if reply is not None and reply.ok:
                job.picked_up = True
                self.stats["picked_up"] += 1
            elif reply is not None and reply.status in (404, 409):
                self.job = None  # no longer ours (cancelled or reassigned meanwhile)
            return
        reply = await self.account.request("POST", f"/api/v1/deliveries/{job.delivery_id}/deliver", json={})
        if reply is not None and (reply.ok or reply.status in (404, 409)):
            self.job = None
            if reply.ok:
                self.stats["delivered"] += 1
                self.state = "available"
                await self._after_delivery()

    async def _release(self, job: Job) -> None:
        self.job = None
        reply = await self.account.request(
            "POST", f"/api/v1/deliveries/{job.delivery_id}/release", json={"reason": "simulated: vehicle problem"}
        )
        if reply is not None and reply.ok:
            self.stats["released"] += 1
            self.state = "available"

    async def _after_delivery(self) -> None:
        choice = self.settings.habits.after_delivery(self.rng)
        now = time.monotonic()
        if choice == "break":
            if await self._set_state("on_break"):
                self.stats["breaks"] += 1
                low, high = self.settings.habits.break_s
                self.clock.break_until = now + self.rng.uniform(low, high) / self.settings.speedup
        elif choice == "stale":
            self.stats["stale"] += 1
            log.info("%s: goes quiet (stale)", self.name)
            low, high = self.settings.habits.stale_real_s
            self.clock.stale_until = now + self.rng.uniform(low, high)
            self.offer = None
            self.points.clear()

    async def _set_state(self, state: str) -> bool:
        reply = await self.account.request("POST", "/api/v1/driver/availability", json={"state": state})
        if reply is not None and reply.ok:
            self.state = reply.body.get("state", state)
            return True
        return False

    async def _catch_up(self) -> None:
        """Take over what the server says: vehicle, state, a job in hand, an offer waiting for an answer."""
        reply = await self.account.request("GET", "/api/v1/driver/me")
        if reply is None or not reply.ok:
            return
        me = reply.body
        self.vehicle = me.get("vehicle", self.vehicle)
        self.state = me.get("state", self.state)
        active = me.get("active_deliveries") or []
        if active and (self.job is None or self.job.delivery_id not in {str(d["id"]) for d in active}):
            self.job = job_from(active[0])
        elif not active:
            self.job = None
        if me.get("pending_offer") and self.offer is None:
            self._consider_offer(me["pending_offer"])
        if self.state in ("offline", "on_break") and self.clock.online_at is None and self.clock.break_until is None:
            self.clock.online_at = time.monotonic()

    async def _ping(self) -> None:
        points, self.points = self.points[-100:], []
        await self.account.request("POST", "/api/v1/driver/locations", json={"points": points})

    def _point(self) -> dict:
        return {
            "lat": round(self.position.lat, 6),
            "lng": round(self.position.lng, 6),
            "recorded_at": datetime.now(UTC).isoformat(),
            "accuracy": 8.0,
        }

    async def sign_off(self) -> None:
        """At the end of a run: go offline unless carrying a picked-up delivery (the server would refuse)."""
        if self.account.token and not (self.job and self.job.picked_up):
            await self._set_state("offline")

    # --- the websocket ------------------------------------------------------------------------------
    async def _read_socket(self) -> None:
        url = f"{self.ws_url}/ws/driver/?token={self.account.token}"
        delay = 1.0
        while True:
            try:
                async with websockets.connect(url, open_timeout=10, ping_interval=20) as socket:
                    if self.last_seq:
                        self.stats["ws_resumes"] += 1
                        await socket.send(json.dumps({"type": "resume", "data": {"after_seq": self.last_seq}}))
                    self.connected.set()
                    delay = 1.0
                    async for raw in socket:
                        self._received(raw)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # closed, refused, reset: reconnect and resume
                self.stats["ws_disconnects"] += 1
                log.warning("%s: websocket: %s; reconnecting", self.name, str(exc) or type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    def _received(self, raw) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("%s: websocket sent something that is not JSON", self.name)
            return
        seq = message.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return
            self.last_seq = seq
        if message.get("type") == "error":
            log.warning("%s: websocket error: %s", self.name, message.get("data"))
            return
        self.inbox.put_nowait(message)
