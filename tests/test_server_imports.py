"""What a server process does not load: libraries that only zone edits or Celery use stay out of its memory."""

import subprocess
import sys

from tests.servers import ROOT

# Each is imported where it is used (zones.geometry, core.outbound); one top-level import brings it back into
# every server process: shapely with numpy ~20 MB of RSS, httpx ~3 MB.
LAZY = ("shapely", "numpy", "httpx")


def test_the_server_application_loads_without_shapely_or_httpx():
    # The application as a worker imports it, and the task modules it imports once it queues a task.
    code = f"import sys, config.asgi, deliveries.tasks; print(sorted(set({LAZY!r}) & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_what_the_server_loads_is_left_out_of_its_garbage_collections():
    # A full collection walks every tracked object it is not told to leave out: all of Django's and the app's
    # objects, a ~70 ms pause of every request and socket of the process (BENCHMARKS.md, round 7).
    code = "import gc, config.asgi; print(gc.get_freeze_count(), len(gc.get_objects()))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    frozen, tracked = map(int, loaded.stdout.split())
    assert frozen > 10 * max(tracked, 1)
