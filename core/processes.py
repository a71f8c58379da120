"""Child processes that Relay's own commands start (the demo's server and fleet) and the tests' servers."""

import signal
import subprocess


def stop_process(process: subprocess.Popen | None, grace_s: float = 20) -> None:
    """Ask a child to stop with SIGTERM, and kill it if it is still running after `grace_s` seconds.

    Every child Relay starts treats SIGTERM as Ctrl-C: the server (`manage.py serve`), the fleet (`manage.py
    simulate`) and a Celery worker all shut down gracefully on it. SIGINT is not used, because a child inherits an
    ignored SIGINT from its parent. A shell ignores it in its background jobs, and so may a CI runner. The fleet
    (asyncio) then never heard the request and was killed after the grace period."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
