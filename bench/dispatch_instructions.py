"""Instructions per create + dispatch + accept, counted by valgrind: a figure that does not drift with the
machine's speed (issue 12, round 16).

    python -m bench.dispatch_instructions [--ops 5 105] [--repeat 1]

Runs `bench.dispatch_cpu` under `valgrind --tool=callgrind` twice, with the two numbers of operations given, and
prints the difference of the two runs' instruction counts divided by the difference of their operations: what
one more operation costs in this process (the ASGI application, Django's request thread, the pushes' hand-off),
everything else (Python's start, Django's set-up, the fixtures, the warm-up) cancelled out. The environment is
bench.dispatch_cpu's (DATABASE_URL of a migrated PostgreSQL database, REDIS_URL); PYTHONHASHSEED is fixed so that
two runs hash alike.

Why: CPU time per operation moved by up to 1.5 times within an hour on this shared machine (BENCHMARKS.md, rounds
13 to 15), so a change of a few per cent could not be seen. The instruction count of the same code moves by ~1 %
between runs (timing-dependent paths: the pool's checks, the garbage collector). Instructions are not time:
cache misses, the kernel's share (system calls, waking threads) and PostgreSQL's and Redis's own work are not in
them, so this compares two versions of the Python path; `make bench` says what the server costs. Under valgrind
the process runs ~30 times slower, so the timing-dependent paths take their slow branches more often than in
production: compare counts with each other, not with seconds. Needs valgrind (Debian's package).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile


def instructions(ops: int) -> int:
    """The instructions of one `bench.dispatch_cpu --ops N` process, from start to exit."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [sys.executable, "-m", "bench.dispatch_cpu", "--ops", str(ops), "--warmup", "5"]
        done = subprocess.run(command, env={**os.environ, "PYTHONHASHSEED": "0"}, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"bench.dispatch_cpu --ops {ops} failed under valgrind:\n{done.stderr[-3000:]}")
        with open(out) as counts:
            for line in counts:
                if line.startswith("summary:"):
                    return int(line.split()[1])
    raise SystemExit("callgrind wrote no summary")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, nargs=2, default=(5, 105), metavar=("FEW", "MORE"))
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs (each pair printed)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind: apt-get install valgrind")
    few, more = sorted(args.ops)
    if few == more:
        raise SystemExit("--ops needs two different numbers")
    for _ in range(args.repeat):
        per_op = (instructions(more) - instructions(few)) / (more - few)
        print(f"instructions per create + dispatch + accept: {per_op / 1e6:.2f} M ({few} and {more} operations)")


if __name__ == "__main__":
    main()
