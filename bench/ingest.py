"""Location ingest: points/s accepted, and latency, through the REST batch endpoint (load from wrk, with
bench/ingest_rest.lua) and the driver websocket (the lean asyncio generator of bench/driverws.py), at the
spec's load (10,000 drivers pinging every 4 s = 2,500 points/s offered). Lower bound: the Redis command a
ping sends to the location index (drivers/index_command.py), one round trip per point."""

import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from bench.common import HOST, KEY_PREFIX, REDIS_URL, RESULTS, paced, summary_ms
from drivers import index_command

JITTER_DEG = 0.00003  # ~3 m: drivers wobble in place, the dispatch geometry stays as seeded


def _iso(ts: datetime) -> str:
    return ts.isoformat()


# --- REST, driven by wrk --------------------------------------------------------------------------------
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WRK_SCRIPT = Path(__file__).with_name("ingest_rest.lua")


def rest(
    port: int,
    drivers: list[dict],
    *,
    batch: int,
    duration: float,
    requests_per_s: float | None = None,
    connections: int = 32,
    threads: int = 1,
) -> dict:
    """POST /api/v1/driver/locations from wrk (compiled: a few µs of CPU per request, where a Python client
    spends ~100 µs that the 2 cores would take from the server). requests_per_s=None: each connection sends its
    next request as soon as the answer comes (the server's capacity); else requests start on a schedule of
    requests_per_s over all threads, at most `connections` in flight (bench/ingest_rest.lua)."""
    roster = RESULTS / "wrk-drivers.txt"
    roster.write_text("".join(f"{d['token']} {d['lat']} {d['lng']}\n" for d in drivers))
    interval_ms = 0 if requests_per_s is None else threads * 1000 / requests_per_s
    env = dict(os.environ, BENCH_DRIVERS=str(roster), BENCH_BATCH=str(batch), BENCH_INTERVAL_MS=f"{interval_ms:.3f}")
    env["BENCH_THREADS"] = str(threads)
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{round(duration)}s", "--timeout", "10s"]
    argv += ["-s", str(WRK_SCRIPT), f"http://{HOST}:{port}/"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = [row for row in done.stdout.splitlines() if row.startswith("WRK_JSON ")]
    if done.returncode != 0 or not report:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    out = json.loads(report[0].removeprefix("WRK_JSON "))
    seconds = out["duration_us"] / 1e6
    latency = {f"{k}_ms": round(v / 1000, 2) for k, v in out["latency_us"].items()}
    ok = out["statuses"].get("202", 0)
    return {
        "generator": f"wrk -t{threads} -c{connections}, a request start every {interval_ms:.2f} ms per thread",
        "points_per_request": batch,
        "offered_requests_per_s": requests_per_s or "as fast as answered",
        "duration_s": round(seconds, 2),
        "requests": out["requests"],
        "requests_ok": ok,
        "requests_failed": out["requests"] - ok,
        "errors": out["errors"],
        "statuses": out["statuses"],
        "requests_per_s": round(out["requests"] / seconds, 1),
        "accepted_points_per_s": round(out["accepted_points"] / seconds, 1),
        "latency": {"n": out["requests"], **latency},
        "generator_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
    }


# --- websocket --------------------------------------------------------------------------------------------
async def websocket(
    sockets, *, points_per_s: float, duration: float, max_outstanding: int = 1000, probe: bool = True
) -> dict:
    """Offer points_per_s as `location` messages over the already open sockets, drivers in turn. Each is
    followed by a probe that times it (see bench/driverws.py). A point is not sent while max_outstanding are
    unanswered (counted as skipped): the backlog a slow server builds stays small and drains in seconds
    instead of spilling into the next benchmark. probe=False sends the locations alone (nothing to time them
    by): the CPU of a location without the probe's error round trip."""
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
        ok = await sockets.send_location(k, lat, lng, _iso(datetime.now(UTC)), probe=probe)
        sent["ok" if ok else "closed"] += 1

    window = await paced(points_per_s, duration, launch, max_in_flight=4 * n)
    if not probe:
        return {
            "offered_points_per_s": points_per_s,
            "duration_s": window["offer_window_s"],
            "sent": sent["ok"],
            "send_failed_closed": sent["closed"],
            "skipped_generator_full": window["skipped"],
        }
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
async def lower_bound(drivers: list[dict], *, points_per_s: float, duration: float) -> dict:
    """The Redis command of one indexed ping (drivers/index_command.py: one EVAL that moves the driver's GEO
    member, its `seen` score, `pos` hash and `dirty` mark), one round trip per point, offered at the same rate,
    on a key space of its own."""
    client = aioredis.Redis.from_url(REDIS_URL, max_connections=64)
    prefix = KEY_PREFIX + "lb:"
    latencies: list[float] = []
    rng = random.Random()

    async def launch(i: int) -> None:
        driver = drivers[i % len(drivers)]
        lat = driver["lat"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        lng = driver["lng"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        start = time.perf_counter()
        async with client.pipeline(transaction=False) as pipe:
            index_command.queue_position(pipe, prefix, driver["id"], lng, lat, time.time(), driver["zone"])
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
