"""REST location ingest alone, without the full bench: server CPU per `POST /api/v1/driver/locations`.

    python -m bench.ingest_cpu [--drivers 2000] [--seconds 10] [--workers 2] [--reuse]
    python -m bench.ingest_cpu --in-process 3000 [--concurrency 1] [--profile FILE] [--reuse]

Uses the database and Redis db named by BENCH_DATABASE_NAME and BENCH_REDIS_URL (required: both are wiped unless
--reuse keeps the fixture of an earlier run, so they must be your own, never the full bench's), with the fixture
of bench/sockets_cpu.py (online drivers, their tokens and positions).

Over HTTP (the default): a production-mode server (`manage.py serve --workers N`), loaded by wrk as `make bench`
loads it (bench/ingest.py): 1 point per request as fast as answered, first with no token cached yet (as
`make bench` starts), then again, then 5 points per request paced at 500 requests/s. Reports the server's CPU
(/proc/<pid>/stat of every server process, the idle rate subtracted) per request, requests/s and latency. Runs
are short; on a shared machine compare CPU per request, not throughput.

--in-process N: the ASGI application called directly in this process, N one-point requests of the fixture's
drivers (after one first request each, every token a miss: `cold_cpu_ms_per_request`), `--concurrency` of them at
a time: CPU per request without HTTP parsing or sockets, and with --profile FILE the cProfile stats of those calls.
"""

import argparse
import asyncio
import cProfile
import json
import os
import resource
import time
from datetime import UTC, datetime

from bench.common import PYTHON, RESULTS, Service, app_env, asgi_post, cpu_seconds, free_port, wait_port
from bench.sockets_cpu import idle_cpu_per_s, own_fixture

PATH = "/api/v1/driver/locations"


def over_http(args, fixture: dict) -> dict:
    from bench import ingest  # wrk's runner

    drivers = fixture["drivers"][: args.drivers]
    port = free_port()
    argv = [PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    server = Service("ingest-server", argv, app_env()).start()
    out: dict = {"drivers": len(drivers), "workers": args.workers}
    try:
        wait_port(port, 60, server.proc)
        time.sleep(3)  # the workers' imports done
        idle = idle_cpu_per_s(server.pid)
        out["idle_cpu_per_s"] = round(idle, 4)
        # First with every token unknown to the processes (as `make bench`'s REST phase meets them), then again
        # with the token caches filled, then batches.
        for name, batch, rate in (("cold_one_point", 1, None), ("one_point", 1, None), ("five_points", 5, 500.0)):
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            run = ingest.rest(
                port, drivers, batch=batch, duration=args.seconds, requests_per_s=rate, connections=args.connections
            )
            used = cpu_seconds(server.pid) - cpu0 - idle * (time.monotonic() - t0)
            out[name] = {
                "requests": run["requests"],
                "statuses": run["statuses"],
                "requests_per_s": run["requests_per_s"],
                "accepted_points_per_s": run["accepted_points_per_s"],
                "server_cpu_ms_per_request": round(used * 1000 / run["requests"], 3),
                "latency": run["latency"],
                "generator_cpu_s": run["generator_cpu_s"],
            }
            time.sleep(1)
    finally:
        server.stop()
    return out


def in_process(args, fixture: dict) -> dict:
    os.environ.update(app_env())
    from config.asgi import application

    drivers = fixture["drivers"][: args.drivers]

    async def call(driver: dict) -> int:
        point = {"lat": driver["lat"], "lng": driver["lng"], "recorded_at": datetime.now(UTC).isoformat()}
        body = json.dumps({"points": [point]}).encode()
        status, _ = await asgi_post(application, PATH, driver["token"], body)
        return status

    async def run(n: int) -> dict[int, int]:
        statuses: dict[int, int] = {}
        for start in range(0, n, args.concurrency):
            batch = [drivers[(start + k) % len(drivers)] for k in range(min(args.concurrency, n - start))]
            for status in await asyncio.gather(*(call(d) for d in batch)):
                statuses[status] = statuses.get(status, 0) + 1
        return statuses

    async def main() -> dict:
        cold0 = time.process_time()
        await run(len(drivers))  # warm-up: the token cache, the zones, Redis connections (one miss per driver)
        cold = time.process_time() - cold0
        profile = cProfile.Profile() if args.profile else None
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        statuses = await run(args.in_process)
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        return {
            "requests": args.in_process,
            "concurrency": args.concurrency,
            "statuses": statuses,
            "cpu_ms_per_request": round(cpu * 1000 / args.in_process, 3),
            "wall_ms_per_request": round(wall * 1000 / args.in_process, 3),
            "cold_cpu_ms_per_request": round(cold * 1000 / len(drivers), 3),
        }

    import uvloop  # the server's loop (uvicorn picks it when installed)

    return uvloop.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drivers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run (keep it short: shared cores)")
    parser.add_argument("--workers", type=int, default=2, help="server processes (`serve --workers`)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections, as `make bench`")
    parser.add_argument("--in-process", type=int, metavar="N", help="N ASGI calls in this process, no HTTP")
    parser.add_argument("--concurrency", type=int, default=1, help="--in-process: calls gathered at a time")
    parser.add_argument("--profile", metavar="FILE", help="--in-process: cProfile stats of the measured calls")
    parser.add_argument("--reuse", action="store_true", help="keep the database and fixture of an earlier run")
    args = parser.parse_args()
    fixture = own_fixture(args.drivers, reuse=args.reuse)
    started = resource.getrusage(resource.RUSAGE_SELF)
    out = in_process(args, fixture) if args.in_process else over_http(args, fixture)
    if not args.in_process:
        ended = resource.getrusage(resource.RUSAGE_SELF)
        out["runner_cpu_s"] = round(ended.ru_utime + ended.ru_stime - started.ru_utime - started.ru_stime, 2)
    print(json.dumps(out, indent=2))
    (RESULTS / "ingest_cpu.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
