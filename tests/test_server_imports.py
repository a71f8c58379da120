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
