"""Driver sockets alone, without the full bench: memory per socket and server CPU per websocket location.

    python -m bench.sockets_cpu [--sockets 500] [--rate 500] [--seconds 10] [--workers 1] [--reuse]

Starts a production-mode server (`manage.py serve`, PostgreSQL + Redis, the pub/sub channel layer) on the
database and Redis db named by BENCH_DATABASE_NAME and BENCH_REDIS_URL (required: both are wiped unless --reuse
keeps the fixture of an earlier run, so they must be your own, never the full bench's), opens N driver sockets
with the fixture's tokens and reports:

- RSS per socket: VmRSS of every server process (/proc) before and after opening them;
- server CPU (/proc/<pid>/stat, all server processes, the idle rate subtracted) per `location` message offered
  at a fixed rate, twice: each location followed by the bench's probe (an unknown type, answered with an error
  once the location is handled: as `make bench` measures, latency included), then locations alone (drained
  when the server's CPU is back to idle).

--profile FILE runs the server (one process) under cProfile and writes its stats there when it stops.
"""

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import time
from datetime import UTC, datetime

from bench.common import (
    DB_NAME,
    PYTHON,
    REDIS_URL,
    RESULTS,
    Service,
    app_env,
    cpu_seconds,
    free_port,
    paced,
    rss_by_process_mb,
    run_checked,
    summary_ms,
    wait_port,
)
from bench.driverws import DriverSockets
from bench.ingest import JITTER_DEG
from bench.run import reset_database

FIXTURE = RESULTS / "sockets_fixture.json"


def prepare(n: int) -> dict:
    print(f"database {DB_NAME}: drop, create, migrate, seed {n} drivers; {REDIS_URL}: flush", flush=True)
    reset_database()
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = app_env()
    run_checked([PYTHON, "manage.py", "migrate", "--noinput"], env, timeout=300)
    run_checked([PYTHON, "manage.py", "load_zones", "tests/data/demo_zones.geojson"], env, timeout=60)
    run_checked([PYTHON, "-m", "bench.seed", str(FIXTURE), str(n), "0"], env, timeout=300)
    return json.loads(FIXTURE.read_text())


def own_fixture(drivers: int, *, reuse: bool) -> dict:
    """The harnesses' fixture of at least `drivers` drivers, on the database and Redis db the caller named for
    them (both wiped when it is made); with `reuse`, an earlier run's if it is large enough."""
    if not (os.environ.get("BENCH_DATABASE_NAME") and os.environ.get("BENCH_REDIS_URL")):
        sys.exit("set BENCH_DATABASE_NAME and BENCH_REDIS_URL to a database and Redis db of your own (both wiped)")
    fixture = json.loads(FIXTURE.read_text()) if reuse and FIXTURE.exists() else None
    return fixture if fixture is not None and len(fixture["drivers"]) >= drivers else prepare(drivers)


def idle_cpu_per_s(pid: int, seconds: float = 3.0) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def offer(sockets: DriverSockets, rate: float, seconds: float, *, probe: bool) -> int:
    rng = random.Random(12)
    n = len(sockets.drivers)
    sent = 0

    async def launch(i: int) -> None:
        nonlocal sent
        driver = sockets.drivers[i % n]
        lat = driver["lat"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        lng = driver["lng"] + rng.uniform(-JITTER_DEG, JITTER_DEG)
        sent += await sockets.send_location(i % n, lat, lng, datetime.now(UTC).isoformat(), probe=probe)

    await paced(rate, seconds, launch, max_in_flight=4 * n)
    return sent


async def wait_idle(pid: int, idle: float, limit_s: float = 30.0) -> None:
    """Until the server's CPU rate over 0.5 s is back near idle: it has handled what was sent."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if (cpu_seconds(pid) - before) / 0.5 <= idle + 0.02:
            return


async def measure(args, fixture: dict, pid: int, port: int) -> dict:
    drivers = fixture["drivers"][: args.sockets]
    idle_rss = rss_by_process_mb(pid)
    sockets = DriverSockets(port, drivers)
    await sockets.open()
    await asyncio.sleep(2)
    loaded_rss = rss_by_process_mb(pid)
    opened = sockets.open_count
    if not opened:
        raise SystemExit(f"no socket opened: see {RESULTS / 'sockets-server.log'}")
    grown = sum(loaded_rss.values()) - sum(idle_rss.values())
    out = {
        "sockets": opened,
        "failed_connects": sockets.failed_connects,
        "rss_mb": {"before": round(sum(idle_rss.values()), 1), "after": round(sum(loaded_rss.values()), 1)},
        "rss_by_process_mb": sorted(loaded_rss.values(), reverse=True),
        "kb_per_socket": round(grown * 1024 / opened, 1) if opened else None,
    }
    idle = idle_cpu_per_s(pid)
    out["idle_cpu_per_s"] = round(idle, 4)
    for probe in (True, False):
        sockets.probe_latencies.clear()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        sent = await offer(sockets, args.rate, args.seconds, probe=probe)
        if probe:
            deadline = time.monotonic() + 30
            while sockets.outstanding > 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        await wait_idle(pid, idle)
        elapsed = time.monotonic() - t0
        used = cpu_seconds(pid) - cpu0 - idle * elapsed
        name = "location_and_probe" if probe else "location_only"
        out[name] = {
            "offered_per_s": args.rate,
            "sent": sent,
            "server_cpu_ms_per_location": round(used * 1000 / sent, 3) if sent else None,
            "server_cores": round(used / args.seconds, 2),
        }
        if probe:
            out[name]["latency"] = summary_ms(sockets.probe_latencies)
            out[name]["probes_unanswered"] = sockets.outstanding
    out["closed_by_server"] = sockets.closed_by_server
    await sockets.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--rate", type=float, default=500.0, help="location messages per second, all sockets")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1, help="server processes (`serve --workers`)")
    parser.add_argument("--reuse", action="store_true", help="keep the database and fixture of an earlier run")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats to FILE")
    args = parser.parse_args()
    fixture = own_fixture(args.sockets, reuse=args.reuse)
    port = free_port()
    argv = ["manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    if args.profile:
        argv = ["-m", "cProfile", "-o", args.profile, *argv]
    server = Service("sockets-server", [PYTHON, *argv], app_env()).start()
    started = resource.getrusage(resource.RUSAGE_SELF)
    try:
        wait_port(port, 60, server.proc)
        time.sleep(2)  # the workers' imports done
        out = asyncio.run(measure(args, fixture, server.pid, port))
    finally:
        server.stop()
    ended = resource.getrusage(resource.RUSAGE_SELF)
    out["generator_cpu_s"] = round(ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime, 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
