"""Put on a server's PYTHONPATH by bench/socket_memory.py: tracemalloc from the first import, and a snapshot of
the heap written to `$BENCH_TRACEMALLOC_TO.<n>` at each SIGUSR1 (after a full collection)."""

import os

if os.environ.get("BENCH_TRACEMALLOC_TO"):
    import gc
    import signal
    import tracemalloc

    tracemalloc.start(30)
    _taken = 0

    def _snapshot(signum, frame):
        global _taken
        gc.collect()
        _taken += 1
        tracemalloc.take_snapshot().dump(f"{os.environ['BENCH_TRACEMALLOC_TO']}.{_taken}")

    signal.signal(signal.SIGUSR1, _snapshot)
