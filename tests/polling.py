"""Waiting for another process (a server, a Celery worker) to reach an observable state, with a deadline.

This is not a clock stand-in: time-based behaviour of the app is driven by the `clock` fixture. It is for
work that really happens elsewhere, where the only way to see the result is to look again.
"""

import threading
import time


def eventually(probe, *, timeout_s: float, interval_s: float = 0.2):
    """Call `probe` until it returns something truthy (returned) or the deadline passes (None)."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            return None
        pause.wait(interval_s)
