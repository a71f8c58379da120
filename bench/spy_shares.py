"""Where a py-spy profile's samples are: `python -m bench.spy_shares FILE [--top N] [--only TEXT]`.

FILE is py-spy's raw format (`--format raw`: one line per stack, frames `function (path:line)` joined by `;`,
then the sample count), as `make bench BENCH_ARGS="--profile PHASE"` writes to bench/results/profile-PHASE.txt,
or as a profile of the in-process meter is made:

    py-spy record --gil -r 400 -f raw -o spy.txt -- python -m bench.dispatch_cpu --ops 400

It prints each sample's share by the library of its innermost frame (the code that held the GIL: `psycopg`,
`django`, `asyncio`...; Relay's apps by name), by Relay's innermost function (its own work and the library calls
it made), and by Relay's functions inclusive (every sample that has the function anywhere on its stack).
`--only TEXT` keeps the stacks that contain TEXT (e.g. `_respond_sync`: the requests' work, not the fixtures')."""

import argparse
import re
from collections import Counter

RELAY = ("analytics/", "config/", "core/", "deliveries/", "drivers/", "zones/")
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*):\d+\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, path) of each frame, outermost first; a frame py-spy wrote without a path keeps its text."""
    parsed = []
    for frame in stack.split(";"):
        match = FRAME.match(frame)
        parsed.append((match["function"], match["path"]) if match else (frame, ""))
    return parsed


def library(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py") or "?"


def shares(lines, only: str | None = None) -> tuple[int, Counter, Counter, Counter]:
    total, by_library, innermost, inclusive = 0, Counter(), Counter(), Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or (only and only not in stack):
            continue
        samples = int(count)
        stack_frames = frames(stack)
        total += samples
        by_library[library(stack_frames[-1][1])] += samples
        ours = [f"{function} {path}" for function, path in stack_frames if path.startswith(RELAY)]
        if ours:
            innermost[ours[-1]] += samples
            for name in set(ours):
                inclusive[name] += samples
    return total, by_library, innermost, inclusive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--only", help="keep the stacks that contain this text")
    args = parser.parse_args()
    with open(args.file) as lines:
        total, by_library, innermost, inclusive = shares(lines, args.only)
    if not total:
        raise SystemExit("no samples")
    print(f"{total} samples")
    for title, counts in (
        ("by library (innermost frame)", by_library),
        ("by Relay's innermost function", innermost),
        ("by Relay's function, inclusive", inclusive),
    ):
        print(f"\n{title}")
        for name, samples in counts.most_common(args.top):
            print(f"{samples / total * 100:6.1f} %  {name}")


if __name__ == "__main__":
    main()
