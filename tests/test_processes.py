"""core/processes.py: a child Relay starts stops gracefully when asked, even one that inherited an ignored SIGINT
from a parent started as a shell's background job (or by a CI runner that ignores it)."""

import signal
import subprocess
import sys
import time

from core.processes import stop_process
from tests.servers import ROOT

# The fleet's own way of stopping (simulator.fleet.until_stopped), around a task that would run for an hour.
CHILD = """
import asyncio, signal
from simulator.fleet import until_stopped

async def run():
    print("SIGINT ignored:", signal.getsignal(signal.SIGINT) is signal.SIG_IGN, flush=True)  # and running
    try:
        await asyncio.sleep(3600)
    finally:
        print("signed off", flush=True)

try:
    asyncio.run(until_stopped(run()))
except asyncio.CancelledError:
    pass
"""


def test_a_child_that_ignores_sigint_still_stops_gracefully_when_asked():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job's parent has it
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert child.stdout.readline().strip() == "SIGINT ignored: True"
        started = time.monotonic()
        stop_process(child, grace_s=10)
        took = time.monotonic() - started
    finally:
        if child.poll() is None:
            child.kill()
        output = child.stdout.read()
        child.stdout.close()
    assert child.returncode == 0, output
    assert "signed off" in output
    assert took < 10  # asked and done, not killed at the end of the grace period
