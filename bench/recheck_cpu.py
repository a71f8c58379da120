"""Server CPU per socket credential recheck, and the sockets' answers while rechecks run.

    python -m bench.recheck_cpu [--sockets 2000] [--workers 2] [--rechecks 5]

Needs the fixture of an earlier `bench.sockets_cpu` run with at least that many sockets (same BENCH_DATABASE_NAME
and BENCH_REDIS_URL, required). Starts `manage.py serve`, opens the sockets, then for 10 s sends probes (a location
followed by the bench's probe, 100/s) alone, and for 10 s the same while `recheck_socket_credentials` (the beat
task's body) runs the given number of times: the server's CPU above the first 10 s, per recheck, and the probes'
latency in both windows.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime

from bench.common import PYTHON, Service, app_env, cpu_seconds, free_port, summary_ms, wait_port
from bench.driverws import DriverSockets
from bench.sockets_cpu import FIXTURE

PROBES_PER_S = 100
WINDOW_S = 10.0


async def probes(sockets: DriverSockets) -> None:
    end, i = time.monotonic() + WINDOW_S, 0
    tasks = []
    while time.monotonic() < end:
        n = i % len(sockets.drivers)
        driver, now = sockets.drivers[n], datetime.now(UTC).isoformat()
        tasks.append(asyncio.create_task(sockets.send_location(n, driver["lat"], driver["lng"], now, probe=True)))
        i += 1
        await asyncio.sleep(1 / PROBES_PER_S)
    await asyncio.gather(*tasks)


async def measure(args, pid: int, port: int) -> dict:
    from asgiref.sync import sync_to_async

    from core.ws import recheck_socket_credentials

    sockets = DriverSockets(port, json.loads(FIXTURE.read_text())["drivers"][: args.sockets])
    await sockets.open()
    await asyncio.sleep(3)
    cpu0 = cpu_seconds(pid)
    await probes(sockets)
    quiet_cpu = cpu_seconds(pid) - cpu0
    quiet = summary_ms(sockets.probe_latencies)
    sockets.probe_latencies.clear()

    async def rechecks() -> None:
        for _ in range(args.rechecks):
            await sync_to_async(recheck_socket_credentials)()
            await asyncio.sleep(WINDOW_S / args.rechecks)

    cpu0 = cpu_seconds(pid)
    await asyncio.gather(probes(sockets), rechecks())
    used = cpu_seconds(pid) - cpu0 - quiet_cpu
    out = {
        "sockets": sockets.open_count,
        "rechecks": args.rechecks,
        "server_cpu_ms_per_recheck": round(used * 1000 / args.rechecks, 1),
        "probe_latency_quiet": quiet,
        "probe_latency_during_rechecks": summary_ms(sockets.probe_latencies),
        "probes_unanswered": sockets.outstanding,
        "closed_by_server": sockets.closed_by_server,
    }
    await sockets.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rechecks", type=int, default=5)
    args = parser.parse_args()
    if not (os.environ.get("BENCH_DATABASE_NAME") and os.environ.get("BENCH_REDIS_URL")):
        sys.exit("set BENCH_DATABASE_NAME and BENCH_REDIS_URL to those of an earlier bench.sockets_cpu run")
    if not FIXTURE.exists() or len(json.loads(FIXTURE.read_text())["drivers"]) < args.sockets:
        sys.exit(f"run bench.sockets_cpu with --sockets {args.sockets} first (it seeds {FIXTURE})")
    env = app_env()
    os.environ.update(env)  # this process sends the rechecks through the server's channel layer
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    port = free_port()
    argv = [PYTHON, "manage.py", "serve", "--port", str(port), "--workers", str(args.workers)]
    server = Service("recheck-server", argv, env).start()
    try:
        wait_port(port, 60, server.proc)
        time.sleep(2)  # the workers' imports done
        out = asyncio.run(measure(args, server.pid, port))
    finally:
        server.stop()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
