"""Location ingest: points/s accepted, and latency, through the REST batch endpoint and the driver websocket,
at the spec's load (10,000 drivers pinging every 4 s = 2,500 points/s offered). Lower bound: the same Redis
commands `record_positions` sends (drivers/locations.py `_write_redis`), as one raw pipeline per point."""

import asyncio
import json
import multiprocessing
import random
import time
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from bench.common import KEY_PREFIX, REDIS_URL, HttpError, HttpPool, paced, summary_ms

PING_EVERY_S = 4.0
JITTER_DEG = 0.00003  # ~3 m: drivers wobble in place, the dispatch geometry stays as seeded


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def _points(driver: dict, count: int, rng: random.Random) -> list[dict]:
    """`count` pings 4 s apart ending now, around the driver's seeded position."""
    now = datetime.now(UTC)
    return [
        {
            "lat": driver["lat"] + rng.uniform(-JITTER_DEG, JITTER_DEG),
            "lng": driver["lng"] + rng.uniform(-JITTER_DEG, JITTER_DEG),
            "recorded_at": _iso(now - timedelta(seconds=PING_EVERY_S * (count - 1 - k))),
            "accuracy": 5,
        }
        for k in range(count)
    ]


# --- REST --------------------------------------------------------------------------------------------------
def _rest_worker(port: int, drivers: list[dict], rate: float, duration: float, batch: int, conns: int, out) -> None:
    """One load-generator process: `rate` requests/s of `batch` points each, drivers in turn."""

    async def main() -> dict:
        pool = HttpPool(port, conns)
        rng = random.Random()
        latencies: list[float] = []
        counts = {"ok": 0, "errors": 0, "accepted_points": 0, "statuses": {}}

        async def launch(i: int) -> None:
            driver = drivers[i % len(drivers)]
            body = {"points": _points(driver, batch, rng)}
            start = time.perf_counter()
            try:
                status, data = await pool.request("POST", "/api/v1/driver/locations", body, driver["token"])
            except HttpError:
                counts["errors"] += 1
                return
            elapsed = time.perf_counter() - start
            counts["statuses"][status] = counts["statuses"].get(status, 0) + 1
            if status == 202:
                counts["ok"] += 1
                counts["accepted_points"] += json.loads(data)["accepted"]
                latencies.append(elapsed)
            else:
                counts["errors"] += 1

        window = await paced(rate, duration, launch, max_in_flight=conns)
        pool.close()
        return {"latencies": latencies, **counts, **window}

    out.put(asyncio.run(main()))


def rest(port: int, drivers: list[dict], *, points_per_s: float, duration: float, batch: int, processes: int) -> dict:
    """Offer points_per_s through POST /api/v1/driver/locations from `processes` generator processes."""
    requests_per_s = points_per_s / batch
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    shards = [drivers[k::processes] for k in range(processes)]
    workers = [
        ctx.Process(
            target=_rest_worker, args=(port, shard, requests_per_s / processes, duration, batch, 32, out), daemon=True
        )
        for shard in shards
    ]
    for worker in workers:
        worker.start()
    parts = [out.get(timeout=duration + 60) for _ in workers]
    for worker in workers:
        worker.join(10)
    latencies = [x for part in parts for x in part["latencies"]]
    window = max(part["offer_window_s"] for part in parts)
    statuses: dict = {}
    for part in parts:
        for status, n in part["statuses"].items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
    accepted = sum(part["accepted_points"] for part in parts)
    return {
        "points_per_request": batch,
        "offered_points_per_s": points_per_s,
        "offered_requests_per_s": requests_per_s,
        "generator_processes": processes,
        "duration_s": window,
        "requests_ok": sum(part["ok"] for part in parts),
        "requests_failed": sum(part["errors"] for part in parts),
        "requests_skipped_generator_full": sum(part["skipped"] for part in parts),
        "statuses": statuses,
        "accepted_points_per_s": round(accepted / window, 1) if window else None,
        "latency": summary_ms(latencies),
    }


# --- websocket --------------------------------------------------------------------------------------------
async def websocket(sockets, *, points_per_s: float, duration: float, max_outstanding: int = 1000) -> dict:
    """Offer points_per_s as `location` messages over the already open sockets, drivers in turn. Each is
    followed by a probe that times it (see bench/driverws.py). A point is not sent while max_outstanding are
    unanswered (counted as skipped): the backlog a slow server builds stays small and drains in seconds
    instead of spilling into the next benchmark."""
    n = len(sockets.drivers)
    rng = random.Random()
    sent = {"ok": 0, "closed": 0, "server_behind": 0}
    sockets.probe_latencies.clear()
    start = time.perf_counter()

    async def launch(i: int) -> None:
        if sockets.outstanding >= max_outstanding:
            sent["server_behind"] += 1
            return
        k = i % n
        driver = sockets.drivers[k]
        lat = driver["lat"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        lng = driver["lng"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        ok = await sockets.send_location(k, lat, lng, _iso(datetime.now(UTC)), probe=True)
        sent["ok" if ok else "closed"] += 1

    window = await paced(points_per_s, duration, launch, max_in_flight=4 * n)
    # Wait (bounded) for the outstanding probes: they tell when the server has worked through the backlog.
    deadline = time.perf_counter() + 30
    while sockets.outstanding > 0 and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    latencies = list(sockets.probe_latencies)
    # Processed = points whose probe was answered, over the time until the last answer.
    drained_s = sockets.last_answer - start
    return {
        "offered_points_per_s": points_per_s,
        "sockets": sockets.open_count,
        "duration_s": window["offer_window_s"],
        "sent": sent["ok"],
        "send_failed_closed": sent["closed"],
        "skipped_generator_full": window["skipped"],
        "skipped_server_behind": sent["server_behind"],
        "max_outstanding": max_outstanding,
        "probes_unanswered": sockets.outstanding,
        "probes_lost_on_closed_sockets": sockets.lost_probes,
        "processed_points_per_s": round(len(latencies) / drained_s, 1) if drained_s > 0 else None,
        "drain_s": round(drained_s, 2),
        "latency": summary_ms(latencies),
    }


# --- lower bound --------------------------------------------------------------------------------------------
async def lower_bound(drivers: list[dict], zones: list[str], *, points_per_s: float, duration: float) -> dict:
    """The Redis commands of one indexed ping (ZREM from the other zones, GEOADD, ZADD seen, HSET pos, SADD
    dirty) as one pipeline, offered at the same rate, on a key space of its own."""
    client = aioredis.Redis.from_url(REDIS_URL, max_connections=64)
    prefix = KEY_PREFIX + "lb:"
    latencies: list[float] = []
    rng = random.Random()

    async def launch(i: int) -> None:
        driver = drivers[i % len(drivers)]
        member = driver["id"]
        lat = driver["lat"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        lng = driver["lng"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        now = time.time()
        start = time.perf_counter()
        async with client.pipeline(transaction=False) as pipe:
            for code in zones:
                if code != driver["zone"]:
                    pipe.zrem(f"{prefix}geo:{code}", member)
            pipe.geoadd(f"{prefix}geo:{driver['zone']}", (lng, lat, member))
            pipe.zadd(f"{prefix}seen", {member: now})
            pipe.hset(f"{prefix}pos:{member}", mapping={"lat": lat, "lng": lng, "t": now, "zone": driver["zone"]})
            pipe.sadd(f"{prefix}dirty", member)
            await pipe.execute()
        latencies.append(time.perf_counter() - start)

    window = await paced(points_per_s, duration, launch, max_in_flight=64)
    await client.aclose()
    return {
        "offered_points_per_s": points_per_s,
        "duration_s": window["offer_window_s"],
        "skipped_generator_full": window["skipped"],
        "accepted_points_per_s": round(len(latencies) / window["offer_window_s"], 1),
        "latency": summary_ms(latencies),
    }
