"""Where a driver socket's server memory is: `python -m bench.socket_memory [--sockets 500]`.

Starts `manage.py serve` (one process, production mode) under tracemalloc (bench/tracing/sitecustomize.py on its
PYTHONPATH), on the fixture of `bench/sockets_cpu.py` (BENCH_DATABASE_NAME and BENCH_REDIS_URL name a database
and Redis db of your own; `--reuse` keeps an earlier run's), takes a snapshot of its heap before and after opening
N driver sockets, and prints the bytes traced per socket by library (the innermost frame outside the standard
library) and the lines that allocated most. RSS per socket is `make bench`'s figure; this says where it goes.
"""

import argparse
import asyncio
import os
import signal
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from bench.common import PYTHON, ROOT, Service, app_env, free_port, wait_port
from bench.driverws import DriverSockets
from bench.sockets_cpu import own_fixture

TRACING = Path(__file__).resolve().parent / "tracing"


def _owner(frame) -> str | None:
    """The library (or the project's app) a frame's file belongs to; None for the standard library."""
    path = frame.filename
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if path.startswith(str(ROOT)):
        return "relay:" + Path(path).relative_to(ROOT).parts[0]
    return None


def report(before: Path, after: Path, sockets: int, lines: int) -> None:
    grown = tracemalloc.Snapshot.load(str(after)).compare_to(tracemalloc.Snapshot.load(str(before)), "traceback")
    by_owner, by_line = Counter(), Counter()
    for stat in grown:
        frames = list(stat.traceback)[::-1]  # innermost first
        inner = next((frame for frame in frames if _owner(frame)), frames[0])
        owner = _owner(inner) or Path(inner.filename).name
        by_owner[owner] += stat.size_diff
        where = inner.filename.split("site-packages/")[-1].removeprefix(f"{ROOT}/")
        by_line[f"{owner}: {where}:{inner.lineno}"] += stat.size_diff
    print(f"traced per socket: {sum(by_owner.values()) / sockets / 1024:.1f} KB ({sockets} sockets)\n")
    for owner, size in by_owner.most_common():
        if abs(size) / sockets >= 10:
            print(f"  {size / sockets:8.0f} B  {owner}")
    print()
    for line, size in by_line.most_common(lines):
        print(f"  {size / sockets:8.0f} B  {line}")


async def _open(port: int, pid: int, drivers: list[dict], snapshots: str) -> int:
    os.kill(pid, signal.SIGUSR1)
    await _written(Path(f"{snapshots}.1"))
    sockets = DriverSockets(port, drivers)
    await sockets.open()
    await asyncio.sleep(2)  # their first messages (connect, credential check) handled
    os.kill(pid, signal.SIGUSR1)
    await _written(Path(f"{snapshots}.2"))
    opened = sockets.open_count
    await sockets.close()
    return opened


async def _written(path: Path, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    size = -1
    while time.monotonic() < deadline:  # until the file exists and stopped growing
        if path.exists() and path.stat().st_size == size:
            return
        size = path.stat().st_size if path.exists() else -1
        await asyncio.sleep(0.5)
    raise SystemExit(f"no snapshot at {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--lines", type=int, default=25, help="how many of the largest lines to print")
    parser.add_argument("--reuse", action="store_true", help="keep the database and fixture of an earlier run")
    args = parser.parse_args()
    fixture = own_fixture(args.sockets, reuse=args.reuse)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        snapshots = f"{tmp}/heap"
        env = app_env() | {"BENCH_TRACEMALLOC_TO": snapshots, "PYTHONPATH": f"{TRACING}:{ROOT}"}
        server = Service("socket-memory-server", [PYTHON, "manage.py", "serve", "--port", str(port)], env).start()
        try:
            wait_port(port, 60, server.proc)
            time.sleep(2)  # the application imported
            opened = asyncio.run(_open(port, server.pid, fixture["drivers"][: args.sockets], snapshots))
        finally:
            server.stop()
        report(Path(f"{snapshots}.1"), Path(f"{snapshots}.2"), opened, args.lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
