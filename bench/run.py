"""`make bench`: set up a production-mode Relay (PostgreSQL relay_bench, Redis db 5, uvicorn via `manage.py
serve`, a Celery worker), seed it, run every benchmark with its lower bound, print the figures against their
targets, and write them all to bench/results/latest.json. Tears everything down, also on failure."""

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import redis

from bench import accept as accept_bench
from bench import dispatch, ingest, memory, tracking
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
    interpreter,
    main_thread_cpu_seconds,
    rss_mb,
    run_checked,
    wait_port,
)

# The targets of issue 12: (key in the figures, comparison, target, what it is).
TARGETS = [
    ("dispatch_p99_ms", "<", 50, "dispatch POST → offer.created p99, ms"),
    ("dispatch_p50_x_lower_bound", "<=", 4, "dispatch p50 ÷ its lower bound's p50"),
    ("dispatch_server_cpu_ms", "<=", 12, "server CPU per create + dispatch + accept, ms"),
    ("accept_p99_ms", "<", 30, "accept round trip p99 under the dispatch load, ms"),
    ("ingest_rest_requests_per_s", ">=", 1500, "REST ingest, 1 point/request: requests/s"),
    ("ingest_rest_server_cpu_ms", "<=", 1, "REST ingest: server CPU per request, ms"),
    ("ingest_batched_points_per_s", ">=", 2500, "REST ingest, 5 points/request: points/s"),
    ("ingest_batched_p99_ms", "<", 50, "REST ingest, 5 points/request: p99, ms"),
    ("ingest_ws_points_per_s", ">=", 2500, "websocket ingest: points/s"),
    ("ingest_ws_p99_ms", "<", 50, "websocket ingest: p99, ms"),
    ("ingest_ws_server_cpu_ms", "<=", 0.3, "websocket ingest: server CPU per point, ms"),
    ("rss_mb", "<", 300, "server RSS with the driver sockets open, MB"),
    ("kb_per_socket", "<=", 15, "server memory per driver socket, KB"),
    ("tracking_push_lag_p99_ms", "<", 500, "tracking fan-out: ping → location on every socket p99, ms"),
]


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
            "--subprocesses",  # the server's workers, not only its supervisor
            "--gil",  # only the thread holding the GIL: where the CPU goes, not threads waiting on I/O or the GIL
            "-o",
            out,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def generator_cpu_seconds() -> float:
    """CPU of the load generation: this process (the asyncio generators, the seen refresher) and its finished
    children (wrk)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Meter:
    """CPU seconds used during each phase by the server (all its processes), the Celery worker and the load
    generator; divided by the phase's work done they give the CPU per operation, the figure that stays put
    when a busy machine moves latencies by ±30 %."""

    def __init__(self, server: Service, worker: Service) -> None:
        self.server, self.worker = server, worker
        self.phases: dict[str, dict] = {}
        self._start: dict[str, dict] = {}
        self._idle: dict[str, float] = {}

    def _read(self) -> dict:
        return {
            "server_cpu_s": cpu_seconds(self.server.pid),
            "server_loop_cpu_s": main_thread_cpu_seconds(self.server.pid),
            "worker_cpu_s": cpu_seconds(self.worker.pid),
            "generator_cpu_s": generator_cpu_seconds(),
        }

    def start(self, name: str, idle_cpu_per_s: float) -> None:
        self._start[name] = self._read() | {"wall_s": time.perf_counter()}
        self._idle[name] = idle_cpu_per_s

    def stop(self, name: str) -> None:
        end = self._read() | {"wall_s": time.perf_counter()}
        self.phases[name] = {k: round(end[k] - v, 2) for k, v in self._start.pop(name).items()}
        # What the server burns doing nothing (channel-layer receive loops, timers): at low throughput it is a
        # visible share of the CPU per operation, so it is reported beside it.
        self.phases[name]["server_idle_cpu_per_s"] = round(self._idle.pop(name), 3)

    def per(self, name: str, operations: int, unit: str) -> dict:
        """The phase's CPU divided by the work done in it, in ms per operation."""
        phase = self.phases[name]
        phase.update(operations=operations, unit=unit)
        # The server's split: its event loops, and its other threads (Django's request threads above all).
        phase["server_threads_cpu_s"] = round(phase["server_cpu_s"] - phase["server_loop_cpu_s"], 2)
        # What the server would have burnt idling through the phase (its idle rate × the phase's wall time): the
        # figure per operation above it is what the operations themselves cost; the targets judge the whole.
        phase["server_above_idle_cpu_s"] = round(
            phase["server_cpu_s"] - phase["server_idle_cpu_per_s"] * phase["wall_s"], 2
        )
        for key in (
            "server_cpu_s",
            "server_above_idle_cpu_s",
            "server_loop_cpu_s",
            "server_threads_cpu_s",
            "worker_cpu_s",
            "generator_cpu_s",
        ):
            per_op = phase[key] * 1000 / operations if operations else None
            phase[key.replace("_s", "_ms_per_op")] = None if per_op is None else round(per_op, 3)
        return phase


async def benchmarks(args, fixture: dict, server: Service, worker: Service, port: int) -> dict:
    drivers = fixture["drivers"]
    results: dict = {}
    meter = Meter(server, worker)
    settled = {}

    idle = {"cpu_per_s": 0.0}

    async def settle(limit_s: float = 30.0) -> float:
        """Wait (bounded) until the server is idle, so that no phase pays for the backlog of the one before; then
        measure its idle CPU rate over 2 s (uvicorn's ticks and health checks, the channel layer's polls, the
        open sockets' keepalives), which the phase's CPU per operation includes."""
        start = time.perf_counter()
        while time.perf_counter() - start < limit_s:
            before = cpu_seconds(server.pid)
            await asyncio.sleep(0.5)
            if (cpu_seconds(server.pid) - before) / 0.5 < 0.1:
                break
        before = cpu_seconds(server.pid)
        await asyncio.sleep(2.0)
        idle["cpu_per_s"] = (cpu_seconds(server.pid) - before) / 2.0
        return round(time.perf_counter() - start, 1)

    def phase(name: str):
        log(f"{name}…")
        meter.start(name, idle["cpu_per_s"])
        return profile(server, name, args.profile_seconds) if args.profile == name else None

    def done(name: str, spy) -> None:
        meter.stop(name)
        if spy is not None:
            spy.wait(args.profile_seconds + 30)

    async def tracking_fanout() -> dict:
        """Deliveries picked up (seeded through the app's actions), customers' sockets on each, drivers pinging."""
        tracked_path = RESULTS / "tracking.json"
        log(f"seeding {args.tracking_deliveries} deliveries on their way")
        seed = [PYTHON, "-m", "bench.seed_tracking", str(RESULTS / "fixture.json"), str(tracked_path)]
        print(run_checked([*seed, str(args.tracking_deliveries)], app_env(), 300))
        tracked = json.loads(tracked_path.read_text())
        watchers = tracking.Watchers(tracked, args.tracking_sockets // len(tracked))
        # Opening the customers' sockets is a phase of its own: each handshake reads the link and the delivery's
        # state in a request thread, a cost the fan-out's messages must not carry.
        settled["tracking_connect"] = await settle()
        spy = phase("tracking_connect")
        opened = await watchers.open(port)
        done("tracking_connect", spy)
        meter.per("tracking_connect", opened, "customer's tracking socket opened")
        settled["tracking"] = await settle()
        spy = phase("tracking")
        try:
            fanout = await tracking.fanout(port, watchers, duration=args.tracking_seconds)
        finally:
            await watchers.close()
        done("tracking", spy)
        meter.per("tracking", fanout["locations_received"], "location delivered to a socket")
        return fanout

    async def dispatch_phases(sockets) -> tuple[dict, dict]:
        """First at a tenth of the rate, where nothing queues (the cost of one dispatch on its own), then at it."""
        measured = {}
        for name, rate, seconds in (
            ("dispatch_light", args.dispatch_rate / 10, min(15.0, args.dispatch_seconds)),
            ("dispatch", args.dispatch_rate, args.dispatch_seconds),
        ):
            settled[name] = await settle()
            spy = phase(name)
            measured[name] = await dispatch.app(
                sockets, port, fixture["merchant_token"], listened=args.listened, rate=rate, duration=seconds
            )
            done(name, spy)
            meter.per(name, measured[name]["created"], "delivery created + dispatched + accepted")
        return measured["dispatch_light"], measured["dispatch"]

    if args.only == "tracking":
        results["tracking_fanout"] = await tracking_fanout()
        results["cpu_by_phase"] = meter.phases
        return results
    if args.only == "dispatch":
        spy = phase("lower_bounds")
        lb_dispatch = await dispatch.lower_bound(drivers, listened=args.listened, rate=args.dispatch_rate, duration=10)
        lb_accept = await accept_bench.lower_bound(rate=args.dispatch_rate, duration=10)
        done("lower_bounds", spy)
        sockets, _ = await memory.open_sockets(port, server.pid, drivers[: args.listened])
        try:
            light, disp = await dispatch_phases(sockets)
        finally:
            await sockets.close()
        results["dispatch"] = {"app": disp, "app_light": light, "lower_bound": lb_dispatch}
        results["accept"] = {"app": disp.pop("accept"), "app_light": light.pop("accept"), "lower_bound": lb_accept}
        results["cpu_by_phase"] = meter.phases
        return results

    # Lower bounds first, on the idle system.
    spy = phase("lower_bounds")
    lb_dispatch = await dispatch.lower_bound(drivers, listened=args.listened, rate=args.dispatch_rate, duration=10)
    lb_ingest = await ingest.lower_bound(drivers, points_per_s=args.points_per_s, duration=10)
    lb_accept = await accept_bench.lower_bound(rate=args.dispatch_rate, duration=10)
    done("lower_bounds", spy)

    # REST ingest from wrk: 1 point per request as fast as the server answers (its capacity), then 5 points per
    # request paced at the spec's 2,500 points/s.
    settled["ingest_rest"] = await settle()
    spy = phase("ingest_rest")
    rest = ingest.rest(port, drivers, batch=1, duration=args.ingest_seconds, connections=args.wrk_connections)
    done("ingest_rest", spy)
    meter.per("ingest_rest", rest["requests"], "request")
    settled["ingest_rest_batched"] = await settle()
    spy = phase("ingest_rest_batched")
    rest_batched = ingest.rest(
        port,
        drivers,
        batch=args.batch,
        duration=args.ingest_seconds,
        requests_per_s=args.points_per_s / args.batch,
        connections=args.wrk_connections,
    )
    done("ingest_rest_batched", spy)
    meter.per("ingest_rest_batched", round(rest_batched["accepted_points_per_s"] * rest_batched["duration_s"]), "point")

    settled["memory"] = await settle()
    spy = phase("memory")
    sockets, mem = await memory.open_sockets(port, server.pid, drivers[: args.sockets])
    done("memory", spy)
    meter.per("memory", mem["sockets_open"], "socket opened")
    try:
        settled["ingest_ws"] = await settle()
        spy = phase("ingest_ws")
        ws = await ingest.websocket(sockets, points_per_s=args.points_per_s, duration=args.ingest_seconds)
        done("ingest_ws", spy)
        meter.per("ingest_ws", ws["latency"]["n"], "point (+ its probe)")
        # The probe that times a location is an error round trip of its own; the CPU target is a location's.
        settled["ingest_ws_alone"] = await settle()
        spy = phase("ingest_ws_alone")
        ws_alone = await ingest.websocket(
            sockets, points_per_s=args.points_per_s, duration=args.ingest_seconds / 2, probe=False
        )
        await settle()  # the server works through what it was sent before the phase's CPU is read
        done("ingest_ws_alone", spy)
        meter.per("ingest_ws_alone", ws_alone["sent"], "point (no probe)")
        ws["without_probes"] = ws_alone
        mem["sockets_closed_by_server"] = sockets.closed_by_server
        light, disp = await dispatch_phases(sockets)
        mem["rss_after_all_mb"] = rss_mb(server.pid)
        mem["sockets_open_at_end"] = sockets.open_count
        mem["sockets_closed_by_server_at_end"] = sockets.closed_by_server
        mem["unexpected_messages"] = dict(sockets.unexpected)
    finally:
        await sockets.close()

    results["dispatch"] = {"app": disp, "app_light": light, "lower_bound": lb_dispatch}
    results["ingest"] = {"rest": rest, "rest_batched": rest_batched, "websocket": ws, "lower_bound": lb_ingest}
    results["accept"] = {"app": disp.pop("accept"), "app_light": light.pop("accept"), "lower_bound": lb_accept}
    results["tracking_fanout"] = await tracking_fanout()
    results["memory"] = mem
    results["cpu_by_phase"] = meter.phases
    results["settle_s_before_phase"] = settled
    return results


def ratio(a, b):
    return round(a / b, 1) if a is not None and b else None


def figures(results: dict) -> dict[str, tuple]:
    """Each target's figure and the lower bound it is compared with (None where there is none, or where its
    phase did not run: `--only`)."""
    r = results
    cpu = r["cpu_by_phase"]

    def dispatch_latency():
        return r["dispatch"]["app"]["latency"], r["dispatch"]["lower_bound"]["latency"]

    def ingest_lb():
        return r["ingest"]["lower_bound"]

    wanted = {
        "dispatch_p99_ms": lambda: (dispatch_latency()[0]["p99_ms"], f"{dispatch_latency()[1]['p99_ms']} ms"),
        "dispatch_p50_x_lower_bound": lambda: (
            ratio(dispatch_latency()[0]["p50_ms"], dispatch_latency()[1]["p50_ms"]),
            f"p50 {dispatch_latency()[1]['p50_ms']} ms",
        ),
        "dispatch_server_cpu_ms": lambda: (cpu["dispatch"]["server_cpu_ms_per_op"], None),
        "accept_p99_ms": lambda: (
            r["accept"]["app"]["latency"]["p99_ms"],
            f"{r['accept']['lower_bound']['latency']['p99_ms']} ms",
        ),
        "ingest_rest_requests_per_s": lambda: (
            r["ingest"]["rest"]["requests_per_s"],
            f"{ingest_lb()['accepted_points_per_s']}/s offered",
        ),
        "ingest_rest_server_cpu_ms": lambda: (cpu["ingest_rest"]["server_cpu_ms_per_op"], None),
        "ingest_batched_points_per_s": lambda: (r["ingest"]["rest_batched"]["accepted_points_per_s"], None),
        "ingest_batched_p99_ms": lambda: (
            r["ingest"]["rest_batched"]["latency"]["p99_ms"],
            f"{ingest_lb()['latency']['p99_ms']} ms",
        ),
        "ingest_ws_points_per_s": lambda: (r["ingest"]["websocket"]["processed_points_per_s"], None),
        "ingest_ws_p99_ms": lambda: (
            r["ingest"]["websocket"]["latency"]["p99_ms"],
            f"{ingest_lb()['latency']['p99_ms']} ms",
        ),
        "ingest_ws_server_cpu_ms": lambda: (cpu["ingest_ws_alone"]["server_cpu_ms_per_op"], None),
        "rss_mb": lambda: (r["memory"]["rss_mb"], None),
        "kb_per_socket": lambda: (r["memory"]["kb_per_socket"], None),
        "tracking_push_lag_p99_ms": lambda: (r["tracking_fanout"]["push_lag"]["p99_ms"], None),
    }
    values = {}
    for key, figure in wanted.items():
        try:
            values[key] = figure()
        except KeyError:
            values[key] = (None, None)
    return values


_COMPARE = {"<": lambda v, t: v < t, "<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t}


def judge(results: dict) -> list[dict]:
    values = figures(results)
    verdicts = []
    for key, op, target, what in TARGETS:
        value, lower_bound = values[key]
        met = None if value is None else _COMPARE[op](value, target)
        verdicts.append(
            {
                "figure": key,
                "what": what,
                "value": value,
                "target": f"{op} {target}",
                "lower_bound": lower_bound,
                "met": met,
            }
        )
    return verdicts


def report(results: dict) -> list[str]:
    results["targets"] = judge(results)
    rows = ["", "Relay benchmarks (2-core machine shared with other work: latencies are noisy, CPU per op less so)", ""]
    rows.append(f"  {'target':<52} {'value':>10} {'target':>9}  {'lower bound':<22} verdict")
    for t in results["targets"]:
        value = "n/a" if t["value"] is None else f"{t['value']:,}"
        verdict = "no data" if t["met"] is None else "met" if t["met"] else "MISS"
        rows.append(f"  {t['what']:<52} {value:>10} {t['target']:>9}  {t['lower_bound'] or '':<22} {verdict}")
    rows += ["", "  CPU per operation, by phase (ms; server = all server processes):"]
    for name, c in results["cpu_by_phase"].items():
        if "operations" not in c:
            continue
        rows.append(
            f"  {name:<20} {c['operations']:>7} × {c['unit']:<42} server {c['server_cpu_ms_per_op']} (above idle "
            f"{c['server_above_idle_cpu_ms_per_op']} · event loops {c['server_loop_cpu_ms_per_op']} · other threads "
            f"{c['server_threads_cpu_ms_per_op']}) · worker "
            f"{c['worker_cpu_ms_per_op']} · generator {c['generator_cpu_ms_per_op']}"
        )
    if "tracking_fanout" in results:
        rows += tracking_rows(results)
    if "dispatch" not in results:
        return rows
    d, light = results["dispatch"]["app"], results["dispatch"]["app_light"]
    rows += [
        "",
        f"  dispatch at {d['rate_per_s']:g}/s: p50 {d['latency']['p50_ms']} / p95 {d['latency']['p95_ms']} ms, "
        f"{d['created']} created, offers not heard {d['offers_not_heard']}",
        f"  dispatch at {light['rate_per_s']:g}/s (no queueing): p50 {light['latency']['p50_ms']} / p99 "
        f"{light['latency']['p99_ms']} ms; accept p50 {results['accept']['app_light']['latency']['p50_ms']} / p99 "
        f"{results['accept']['app_light']['latency']['p99_ms']} ms",
    ]
    if "ingest" not in results:  # --only dispatch
        return rows
    rows += [
        f"  REST ingest, 1 point: p50 {results['ingest']['rest']['latency']['p50_ms']} / p99 "
        f"{results['ingest']['rest']['latency']['p99_ms']} ms at saturation; statuses "
        f"{results['ingest']['rest']['statuses']}",
        f"  server RSS by process: {' / '.join(str(m) for m in results['memory']['rss_by_process_mb'])} MB; "
        f"after every phase {results['memory']['rss_after_all_mb']} MB",
    ]
    return rows


def tracking_rows(results: dict) -> list[str]:
    t = results["tracking_fanout"]
    cpu = results["cpu_by_phase"]["tracking"]
    return [
        "",
        f"  tracking fan-out: {t['sockets_open']} sockets over {t['deliveries']} deliveries, a ping every "
        f"{t['ping_every_s']:g} s per driver ({t['pings']['accepted']} accepted); {t['locations_received']} of "
        f"{t['locations_expected']} locations delivered; push lag p50 {t['push_lag']['p50_ms']} / p99 "
        f"{t['push_lag']['p99_ms']} ms; server CPU {cpu['server_cpu_ms_per_op']} ms per delivered message "
        f"(opening the sockets: {results['cpu_by_phase']['tracking_connect']['server_cpu_ms_per_op']} ms each)",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, to check the scripts")
    parser.add_argument("--drivers", type=int, default=10_000)
    parser.add_argument("--listened", type=int, default=300, help="grid drivers that pickups are placed on")
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--dispatch-rate", type=float, default=20.0)
    parser.add_argument("--dispatch-seconds", type=float, default=60.0)
    # Offered 10 % above the 2,500 points/s target: at exactly the target, a server that keeps up shows 2,499.8
    # (the edges of the run), and "≥ 2,500" could never be met; the p99 targets are then judged at the higher rate.
    parser.add_argument("--points-per-s", type=float, default=2750.0, help="offered ingest rate (REST batched, ws)")
    parser.add_argument("--ingest-seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=5, help="points per request in the batched REST run")
    parser.add_argument("--wrk-connections", type=int, default=32, help="wrk connections for REST ingest")
    parser.add_argument("--db-pool", type=int, default=10, help="DB_POOL_SIZE for the server and worker (0: none)")
    parser.add_argument(
        "--server-workers",
        type=int,
        default=2,
        help="server processes (manage.py serve --workers; one per core here); RSS and CPU are summed",
    )
    parser.add_argument("--tracking-deliveries", type=int, default=100, help="deliveries watched in the fan-out")
    parser.add_argument("--tracking-sockets", type=int, default=1000, help="customers' sockets, spread evenly")
    parser.add_argument("--tracking-seconds", type=float, default=30.0)
    parser.add_argument(
        "--only",
        choices=["tracking", "dispatch"],
        help="run only this phase (seeding still happens; dispatch: with its lower bounds, the listened sockets only)",
    )
    parser.add_argument("--profile", help="py-spy the server during this phase (e.g. dispatch, ingest_rest)")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.quick:
        args.dispatch_seconds, args.ingest_seconds, args.tracking_seconds = 10.0, 8.0, 8.0
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
        results = asyncio.run(benchmarks(args, fixture, server, worker, port))
    finally:
        refresher.stopped.set()
        for service in (server, worker):
            if service is not None:
                service.stop()
        log("server and worker stopped")
    rows = report(results)
    results["meta"] = {
        "args": vars(args),
        "targets": [t[:3] for t in TARGETS],
        "wall_s": round(time.perf_counter() - started, 1),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "server_interpreter": interpreter(),
        "loadavg_at_end": os.getloadavg(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    built = results["meta"]["server_interpreter"]
    linked = "a shared library" if built["libpython_shared"] else "linked in"
    rows.insert(2, f"  server on {built['executable']}, Python {built['version']}, libpython {linked}")
    print("\n".join(rows))
    print(f"\nwall time {results['meta']['wall_s']} s; all figures in {(RESULTS / 'latest.json').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
