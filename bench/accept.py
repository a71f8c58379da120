"""Offer accept round trip (POST /api/v1/offers/{id}/accept). The app side runs inside the dispatch benchmark
(each offer it produces is accepted by its driver as soon as it arrives); this module holds that call and the
lower bound: one SELECT ... FOR UPDATE + UPDATE transaction on a table of the same shape."""

import time
import uuid
from datetime import UTC, datetime

import psycopg

from bench.common import DB_URL, HttpError, HttpPool, paced, summary_ms


async def accept(pool: HttpPool, offer_id: str, token: str) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        status, _ = await pool.request("POST", f"/api/v1/offers/{offer_id}/accept", {}, token)
    except HttpError:
        status = 0
    return status, time.perf_counter() - start


async def lower_bound(*, rate: float, duration: float) -> dict:
    """Lock a pending row and mark it accepted, in one transaction, on a kept-open connection."""
    total = int(rate * duration)
    ids = [uuid.uuid4() for _ in range(total)]
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(DB_URL.replace("postgres://", "postgresql://")) as conn:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO bench_lb_offer (id, driver_id, status, sent_at) VALUES (%s, %s, 'pending', %s)",
                [(i, uuid.uuid4(), now) for i in ids],
            )
        await conn.commit()
        latencies: list[float] = []

        async def launch(i: int) -> None:
            start = time.perf_counter()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute("SELECT id, status FROM bench_lb_offer WHERE id = %s FOR UPDATE", (ids[i],))
                await cur.fetchone()
                await cur.execute(
                    "UPDATE bench_lb_offer SET status = 'accepted', responded_at = now() WHERE id = %s", (ids[i],)
                )
            latencies.append(time.perf_counter() - start)

        # One connection runs one transaction at a time: at this rate they rarely overlap.
        window = await paced(rate, duration, launch, max_in_flight=1)
    return {"rate_per_s": rate, **window, "latency": summary_ms(latencies)}
