"""Child processes that Relay's own commands start (the demo's server and fleet) and the tests' servers."""

import signal
import subprocess


def stop_process(process: subprocess.Popen | None, grace_s: float = 20) -> None:
    """Ask a child to stop as Ctrl-C would, and kill it if it is still running after `grace_s` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
