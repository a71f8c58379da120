"""A fleet of simulated drivers and one merchant against a running Relay: one asyncio task per actor."""

import asyncio
import logging
import signal
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from simulator.behaviour import Habits, Mix, seeded
from simulator.client import Account
from simulator.driver import DriverSettings, SimDriver
from simulator.geo import ServiceArea
from simulator.merchant import SimMerchant

log = logging.getLogger("relay.simulation")

SIGN_OFF_TIMEOUT_S = 10
REMEMBER_CREATED = 20


@dataclass
class FleetConfig:
    url: str
    drivers: list[str]
    password: str
    zones_file: Path
    merchant: str | None = None
    merchant_password: str = ""
    rate_per_min: float = 6.0
    duration_s: float | None = None
    mix: Mix = field(default_factory=Mix)
    habits: Habits = field(default_factory=Habits)
    speedup: float = 1.0
    seed: int | None = None
    ping_every_s: float = 4.0

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.rstrip("/").removeprefix("http")


class Fleet:
    def __init__(self, config: FleetConfig):
        self.config = config
        self.stats: Counter = Counter()
        self.created: list[dict] = []  # the first deliveries the merchant created (id, tracking_url, ...)
        self.run_id = f"sim-{uuid.uuid4().hex[:8]}" if config.seed is None else f"sim-{config.seed}-{int(time.time())}"
        self.drivers: list[SimDriver] = []

    async def run(self) -> Counter:
        """Run until the duration is over (or forever), then sign the drivers off. Returns the counters."""
        config = self.config
        area = ServiceArea.from_geojson(config.zones_file)
        limits = httpx.Limits(max_connections=max(20, 2 * len(config.drivers)))
        async with httpx.AsyncClient(base_url=config.url.rstrip("/"), timeout=15, limits=limits) as http:
            settings = DriverSettings(
                mix=config.mix, habits=config.habits, speedup=config.speedup, ping_every_s=config.ping_every_s
            )
            for username in config.drivers:
                rng = seeded(config.seed, username)
                self.drivers.append(
                    SimDriver(
                        Account(http, username, self.stats),
                        password=config.password,
                        ws_url=config.ws_url,
                        start=area.random_point(rng),
                        rng=rng,
                        settings=settings,
                        stats=self.stats,
                    )
                )
            tasks = [asyncio.create_task(driver.run(), name=driver.name) for driver in self.drivers]
            if config.merchant:
                merchant = SimMerchant(
                    Account(http, config.merchant, self.stats),
                    password=config.merchant_password,
                    area=area,
                    rate_per_min=config.rate_per_min,
                    run_id=self.run_id,
                    rng=seeded(config.seed, config.merchant),
                    stats=self.stats,
                    on_created=self._remember,
                )
                tasks.append(asyncio.create_task(merchant.run(), name="merchant"))
            try:
                done, _ = await asyncio.wait(tasks, timeout=config.duration_s, return_when=asyncio.ALL_COMPLETED)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("%s ended: %r", task.get_name(), task.exception())
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._sign_off()
        return self.stats

    def _remember(self, delivery: dict) -> None:
        if len(self.created) < REMEMBER_CREATED:
            self.created.append(delivery)

    async def _sign_off(self) -> None:
        try:
            async with asyncio.timeout(SIGN_OFF_TIMEOUT_S):
                await asyncio.gather(*(driver.sign_off() for driver in self.drivers), return_exceptions=True)
        except TimeoutError:
            log.warning("signing the drivers off took too long; the server will mark them stale")

    def summary(self) -> str:
        words = {"offers_decline": "declined", "offers_ignore": "let expire", "ws_resumes": "socket resumes"}
        keys = ("created", "offers", "accepted", "offers_decline", "offers_ignore", "picked_up", "delivered")
        keys += ("released", "breaks", "stale", "set_offline", "ws_resumes", "request_errors")
        return " · ".join(f"{words.get(key, key.replace('_', ' '))} {self.stats[key]}" for key in keys)


def configure_logging(*, level: int = logging.WARNING, path: Path | None = None) -> None:
    """The simulator's own log at `level` (to a file when given, else wherever the root logger writes); the HTTP
    libraries' per-request lines are noise at this volume."""
    for noisy in ("httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.setLevel(level)
    if path is not None:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False


async def until_stopped(coroutine):
    """Await `coroutine`; SIGTERM cancels it as Ctrl-C does, so the drivers still sign off."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await coroutine
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
