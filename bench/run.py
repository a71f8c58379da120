"""`make bench`: set up a production-mode Relay (PostgreSQL relay_bench, Redis db 5, uvicorn via `manage.py
serve`, a Celery worker), seed it, run every benchmark with its lower bound, print the figures against their
targets, and write them all to bench/results/latest.json. Tears everything down, also on failure."""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import redis

from bench import accept as accept_bench
from bench import dispatch, ingest, memory
from bench.common import (
    DB_ADMIN_URL,
    DB_NAME,
    KEY_PREFIX,
    PYTHON,
    REDIS_URL,
    RESULTS,
    ROOT,
    Service,
    app_env,
    cpu_seconds,
    free_port,
    line,
    rss_mb,
    run_checked,
    verdict,
    wait_port,
)

TARGETS = {
    "dispatch_p99_ms": 50,
    "dispatch_ratio_max": 4,
    "ingest_points_per_s": 2500,
    "ingest_p99_ms": 50,
    "accept_p99_ms": 30,
    "rss_mb": 300,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def reset_database() -> None:
    with psycopg.connect(DB_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    redis.Redis.from_url(REDIS_URL).flushdb()  # db 5 is the bench's own


def prepare(args) -> dict:
    env = app_env()
    log("database relay_bench: drop, create, migrate; Redis db 5: flush")
    reset_database()
    run_checked([PYTHON, "manage.py", "migrate", "--noinput"], env, timeout=300)
    run_checked([PYTHON, "manage.py", "load_zones", "tests/data/demo_zones.geojson"], env, timeout=60)
    fixture_path = RESULTS / "fixture.json"
    log(f"seeding {args.drivers} drivers into PostgreSQL and the Redis location index")
    print(run_checked([PYTHON, "-m", "bench.seed", str(fixture_path), str(args.drivers), str(args.listened)], env, 300))
    return json.loads(fixture_path.read_text())


class SeenRefresher(threading.Thread):
    """Keeps every seeded driver's last-seen time fresh (dispatch only considers drivers seen in the last 60 s),
    as their phones would; touches nothing else of the index."""

    def __init__(self, driver_ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.ids = driver_ids
        self.stopped = threading.Event()

    def run(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        while not self.stopped.wait(10):
            now = time.time()
            client.zadd(f"{KEY_PREFIX}seen", dict.fromkeys(self.ids, now))


def start_services(port: int, workers: int) -> tuple[Service, Service]:
    env = app_env()
    server = Service(
        "server",
        [PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env,
    )
    worker = Service(
        "worker",
        [PYTHON, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        env,
    )
    server.start()
    worker.start()
    wait_port(port, 60, server.proc)
    return server, worker


def profile(server: Service, name: str, seconds: float) -> subprocess.Popen | None:
    """py-spy on the server for `seconds` (optional: --profile PHASE)."""
    spy = Path(PYTHON).with_name("py-spy")
    if not spy.exists():
        log("py-spy not installed; skipping the profile")
        return None
    out = RESULTS / f"profile-{name}.txt"
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def benchmarks(args, fixture: dict, server: Service, port: int) -> dict:
    drivers = fixture["drivers"]
    results: dict = {}
    cpu = {}
    settled = {}

    async def settle(limit_s: float = 30.0) -> float:
        """Wait (bounded) until the server is idle, so that no phase pays for the backlog of the one before."""
        start = time.perf_counter()
        while time.perf_counter() - start < limit_s:
            before = cpu_seconds(server.pid)
            await asyncio.sleep(0.5)
            if cpu_seconds(server.pid) - before < 0.05:
                break
        return round(time.perf_counter() - start, 1)

    def phase(name: str):
        cpu[name] = cpu_seconds(server.pid)
        log(f"{name}…")
        return profile(server, name, args.profile_seconds) if args.profile == name else None

    def done(name: str, spy) -> None:
        cpu[name] = round(cpu_seconds(server.pid) - cpu[name], 2)
        if spy is not None:
            spy.wait(args.profile_seconds + 30)

    # Lower bounds first, on the idle system.
    spy = phase("lower_bounds")
    lb_dispatch = await dispatch.lower_bound(drivers, listened=args.listened, rate=args.dispatch_rate, duration=10)
    lb_ingest = await ingest.lower_bound(drivers, fixture["zones"], points_per_s=args.points_per_s, duration=10)
    lb_accept = await accept_bench.lower_bound(rate=args.dispatch_rate, duration=10)
    done("lower_bounds", spy)

    settled["ingest_rest"] = await settle()
    spy = phase("ingest_rest")
    rest = ingest.rest(
        port,
        drivers,
        points_per_s=args.points_per_s,
        duration=args.ingest_seconds,
        batch=1,
        processes=args.generators,
    )
    done("ingest_rest", spy)
    settled["ingest_rest_batched"] = await settle()
    spy = phase("ingest_rest_batched")
    rest_batched = ingest.rest(
        port,
        drivers,
        points_per_s=args.points_per_s,
        duration=args.ingest_seconds,
        batch=args.batch,
        processes=args.generators,
    )
    done("ingest_rest_batched", spy)

    settled["memory"] = await settle()
    spy = phase("memory")
    sockets, mem = await memory.open_sockets(port, server.pid, drivers[: args.sockets])
    done("memory", spy)
    try:
        settled["ingest_ws"] = await settle()
        spy = phase("ingest_ws")
        ws = await ingest.websocket(sockets, points_per_s=args.points_per_s, duration=args.ingest_seconds)
        done("ingest_ws", spy)
        # First at a tenth of the rate, where nothing queues: the cost of one dispatch on its own.
        mem["sockets_closed_by_server"] = sockets.closed_by_server
        settled["dispatch_light"] = await settle()
        spy = phase("dispatch_light")
        light = await dispatch.app(
            sockets,
            port,
            fixture["merchant_token"],
            listened=args.listened,
            rate=args.dispatch_rate / 10,
            duration=min(15.0, args.dispatch_seconds),
        )
        done("dispatch_light", spy)
        settled["dispatch"] = await settle()
        spy = phase("dispatch")
        disp = await dispatch.app(
            sockets,
            port,
            fixture["merchant_token"],
            listened=args.listened,
            rate=args.dispatch_rate,
            duration=args.dispatch_seconds,
        )
        done("dispatch", spy)
        mem["rss_after_all_mb"] = rss_mb(server.pid)
        mem["sockets_open_at_end"] = sockets.open_count
        mem["sockets_closed_by_server_at_end"] = sockets.closed_by_server
        mem["unexpected_messages"] = dict(sockets.unexpected)
    finally:
        await sockets.close()

    results["dispatch"] = {"app": disp, "app_light": light, "lower_bound": lb_dispatch}
    results["ingest"] = {"rest": rest, "rest_batched": rest_batched, "websocket": ws, "lower_bound": lb_ingest}
    results["accept"] = {"app": disp.pop("accept"), "app_light": light.pop("accept"), "lower_bound": lb_accept}
    results["tracking_fanout"] = "not_measured"
    results["memory"] = mem
    results["server_cpu_s_by_phase"] = cpu
    results["settle_s_before_phase"] = settled
    return results


def ratio(a, b):
    return round(a / b, 1) if a is not None and b else None


def report(results: dict) -> list[str]:
    d, lb = results["dispatch"]["app"]["latency"], results["dispatch"]["lower_bound"]["latency"]
    ing = results["ingest"]
    acc, acc_lb = results["accept"]["app"]["latency"], results["accept"]["lower_bound"]["latency"]
    mem = results["memory"]
    t = TARGETS
    results["ratios"] = {
        "dispatch_p50": ratio(d["p50_ms"], lb["p50_ms"]),
        "dispatch_p99": ratio(d["p99_ms"], lb["p99_ms"]),
        "accept_p50": ratio(acc["p50_ms"], acc_lb["p50_ms"]),
        "accept_p99": ratio(acc["p99_ms"], acc_lb["p99_ms"]),
        "ingest_rest_p99": ratio(ing["rest"]["latency"]["p99_ms"], ing["lower_bound"]["latency"]["p99_ms"]),
        "ingest_ws_p99": ratio(ing["websocket"]["latency"]["p99_ms"], ing["lower_bound"]["latency"]["p99_ms"]),
    }
    r = results["ratios"]
    rows = ["", "Relay benchmarks (2-core machine shared with other work: figures are noisy)", ""]
    rows.append(f"dispatch (POST → offer.created), {results['dispatch']['app']['created']} deliveries:")
    rows.append(line("p50", d["p50_ms"], "ms", "", f"lower bound {lb['p50_ms']} ms, ×{r['dispatch_p50']}"))
    rows.append(line("p95", d["p95_ms"], "ms", "", f"lower bound {lb['p95_ms']} ms"))
    rows.append(line("p99", d["p99_ms"], "ms", f"< {t['dispatch_p99_ms']} ms", verdict(d["p99_ms"], 50)))
    rows.append(line("p99 / lower-bound p99", r["dispatch_p99"], "×", "≤ 4×", verdict(r["dispatch_p99"], 4.0001)))
    rows.append(line("p50 / lower-bound p50", r["dispatch_p50"], "×", "≤ 4×", verdict(r["dispatch_p50"], 4.0001)))
    rows.append(line("offers not heard", results["dispatch"]["app"]["offers_not_heard"], "", "0", ""))
    light = results["dispatch"]["app_light"]
    rows.append(
        f"  at {light['rate_per_s']:g}/s (no queueing): p50 {light['latency']['p50_ms']} ms, p99 "
        f"{light['latency']['p99_ms']} ms, p50 ×{ratio(light['latency']['p50_ms'], lb['p50_ms'])} lower bound"
    )
    for name, label in (("rest", "REST, 1 point/request"), ("rest_batched", "REST, batched")):
        x = ing[name]
        rows.append(f"location ingest, {label} ({x['points_per_request']} points/request):")
        rows.append(
            line(
                "accepted points/s",
                x["accepted_points_per_s"],
                "pts/s",
                "≥ 2,500",
                verdict(x["accepted_points_per_s"], 2500 * 0.98, higher_is_better=True),
            )
        )
        rows.append(line("p99", x["latency"]["p99_ms"], "ms", "< 50 ms", verdict(x["latency"]["p99_ms"], 50)))
    w = ing["websocket"]
    rows.append(f"location ingest, websocket ({w['sockets']} sockets):")
    rows.append(
        line(
            "processed points/s",
            w["processed_points_per_s"],
            "pts/s",
            "≥ 2,500",
            verdict(w["processed_points_per_s"], 2500 * 0.98, higher_is_better=True),
        )
    )
    rows.append(
        line(
            "p99",
            w["latency"]["p99_ms"],
            "ms",
            "< 50 ms",
            verdict(w["latency"]["p99_ms"], 50),
        )
    )
    lbi = ing["lower_bound"]
    rows.append(
        line(
            "lower bound: raw Redis pipeline",
            lbi["accepted_points_per_s"],
            "pts/s",
            "",
            f"p99 {lbi['latency']['p99_ms']} ms",
        )
    )
    rows.append("offer accept:")
    rows.append(line("p50", acc["p50_ms"], "ms", "", f"lower bound {acc_lb['p50_ms']} ms, ×{r['accept_p50']}"))
    rows.append(line("p99", acc["p99_ms"], "ms", "< 30 ms", verdict(acc["p99_ms"], 30)))
    acc_light = results["accept"]["app_light"]["latency"]
    rows.append(
        f"  at {light['rate_per_s']:g} deliveries/s: p50 {acc_light['p50_ms']} ms, p99 {acc_light['p99_ms']} ms"
    )
    rows.append("tracking fan-out: not_measured (not built yet)")
    rows.append(f"memory ({mem['sockets_open']} driver sockets open):")
    rows.append(line("server RSS", mem["rss_mb"], "MB", "< 300 MB", verdict(mem["rss_mb"], 300)))
    rows.append(f"  by process (supervisor and workers): {' / '.join(str(m) for m in mem['rss_by_process_mb'])} MB")
    rows.append(
        line(
            "server RSS after all phases",
            mem["rss_after_all_mb"],
            "MB",
            "< 300 MB",
            verdict(mem["rss_after_all_mb"], 300),
        )
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, to check the scripts")
    parser.add_argument("--drivers", type=int, default=10_000)
    parser.add_argument("--listened", type=int, default=300, help="grid drivers that pickups are placed on")
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--dispatch-rate", type=float, default=20.0)
    parser.add_argument("--dispatch-seconds", type=float, default=60.0)
    parser.add_argument("--points-per-s", type=float, default=2500.0)
    parser.add_argument("--ingest-seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=5, help="points per request in the batched REST run")
    parser.add_argument("--generators", type=int, default=2, help="load-generator processes for REST ingest")
    parser.add_argument("--db-pool", type=int, default=10, help="DB_POOL_SIZE for the server and worker (0: none)")
    parser.add_argument(
        "--server-workers",
        type=int,
        default=2,
        help="server processes (manage.py serve --workers; one per core here); RSS and CPU are summed",
    )
    parser.add_argument("--profile", help="py-spy the server during this phase (e.g. dispatch, ingest_rest)")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.quick:
        args.dispatch_seconds, args.ingest_seconds = 10.0, 8.0
    os.environ["DB_POOL_SIZE"] = str(args.db_pool)  # app_env() passes it on to the server and the worker
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fixture = prepare(args)
    port = free_port()
    server = worker = None
    refresher = SeenRefresher([d["id"] for d in fixture["drivers"]])
    try:
        log(f"starting server on 127.0.0.1:{port} and a Celery worker")
        server, worker = start_services(port, args.server_workers)
        refresher.start()
        results = asyncio.run(benchmarks(args, fixture, server, port))
    finally:
        refresher.stopped.set()
        for service in (server, worker):
            if service is not None:
                service.stop()
        log("server and worker stopped")
    rows = report(results)
    results["meta"] = {
        "args": vars(args),
        "targets": TARGETS,
        "wall_s": round(time.perf_counter() - started, 1),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_at_end": os.getloadavg(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print("\n".join(rows))
    print(f"\nwall time {results['meta']['wall_s']} s; all figures in {(RESULTS / 'latest.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
