"""A simulated merchant integration: creates deliveries at a steady rate inside the service area, each with an
`Idempotency-Key`, retrying a request that got no answer with the same key (so a retry never duplicates)."""

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from simulator.client import Account
from simulator.geo import ServiceArea

log = logging.getLogger("relay.simulation")

RETRIES = 2
STREETS = ("Rua Augusta", "Avenida da Liberdade", "Rua do Ouro", "Rua da Prata", "Rua Garrett", "Calçada do Combro")


class SimMerchant:
    def __init__(self, account: Account, *, password: str, area: ServiceArea, rate_per_min: float, run_id: str,
                 rng: random.Random, stats: Counter, on_created: Callable[[dict], None] | None = None):  # fmt: skip
        self.account = account
        self.password = password
        self.area = area
        self.interval_s = 60.0 / rate_per_min if rate_per_min > 0 else None
        self.run_id = run_id
        self.rng = rng
        self.stats = stats
        self.on_created = on_created
        self.created = 0

    async def run(self) -> None:
        if self.interval_s is None:
            return
        if not await self.account.login(self.password):
            log.error("%s: cannot log in; no deliveries will be created", self.account.username)
            return
        next_at = time.monotonic()
        while True:
            try:
                await self.create_one()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["merchant_errors"] += 1
                log.exception("%s: creating a delivery failed", self.account.username)
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def order(self, number: int) -> dict:
        pickup = self.area.random_point(self.rng)
        dropoff = self.area.random_point_near(self.rng, pickup, min_km=0.5, max_km=3.5)
        return {
            "external_id": f"{self.run_id}-{number:05d}",
            "pickup": {
                "name": f"Kitchen {self.rng.randint(1, 9)}",
                "address": f"{self.rng.choice(STREETS)} {self.rng.randint(1, 200)}",
                "lat": round(pickup.lat, 6),
                "lng": round(pickup.lng, 6),
                "phone": "+351210000000",
            },
            "dropoff": {
                "name": f"Customer {number}",
                "address": f"{self.rng.choice(STREETS)} {self.rng.randint(1, 200)}",
                "lat": round(dropoff.lat, 6),
                "lng": round(dropoff.lng, 6),
            },
            "value": f"{self.rng.uniform(8, 60):.2f}",
            "notes": "simulated order",
        }

    async def create_one(self) -> dict | None:
        self.created += 1
        body = self.order(self.created)
        key = f"create-{body['external_id']}"
        for _ in range(1 + RETRIES):
            reply = await self.account.request("POST", "/api/v1/deliveries", json=body, idempotency_key=key)
            if reply is None or reply.status == 409:  # no answer, or the first try is still running: same key again
                await asyncio.sleep(1)
                continue
            if reply.ok:
                self.stats["created"] += 1
                if self.on_created:
                    self.on_created(reply.body)
                return reply.body
            return None
        return None
