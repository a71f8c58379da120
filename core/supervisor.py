"""The supervisor of `manage.py serve --workers N`, and the uvicorn options of both ways of serving.

`serve --workers N` starts this module as a process of its own (`python -m core.supervisor HOST PORT N`): it loads
no Django (~20 MB instead of ~85 MB), only uvicorn, and each worker imports the application itself.

It is uvicorn's supervisor with two additions: a worker that died, or hung past its health check and was killed,
is replaced with a warning in the log, naming both processes (uvicorn says it at info, below the warning level
Relay serves at, so a worker replaced, and every socket it held dropped, left no trace), and its metric samples
folded into the archive of ended processes (core.metrics)."""

import logging
import sys

from uvicorn import Config
from uvicorn.supervisors import Multiprocess

from core.metrics import retire_process

UVICORN_OPTIONS = {
    "log_level": "warning",
    # At that level uvicorn logs no request, yet with the access log on it builds each line's arguments (client
    # address, quoted path) before the logger drops it: per request, on the location pings' hot path.
    "access_log": False,
    # core/lifespan.py: a stopping process sends the pushes its last requests handed off before it exits.
    "lifespan": "on",
    # uvicorn would take the client address from X-Forwarded-For on any connection from 127.0.0.1, so a
    # local client could pick a new address per request. Django decides instead, from NUM_PROXIES.
    "proxy_headers": False,
    # No permessage-deflate on websockets: apps and browsers offer it, and each socket that takes it keeps a zlib
    # compressor and decompressor for its life (measured: 83 KB per driver socket with it, 43 KB without, 300
    # sockets on one process); the messages are small JSON, so compression saves little bandwidth.
    "ws_per_message_deflate": False,
    # A connection idle this long is closed. uvicorn's 5 s is about a driver app's ping interval (~4 s, more when the
    # phone is busy): a ping sent just as the server closed its connection was reset unanswered (seen in a soak).
    # Longer than any ping gap, and than a load balancer's usual 60 s, which then closes first, as it should.
    "timeout_keep_alive": 75,
    # uvicorn's websockets-sansio protocol (what it picks by default), holding less per socket.
    "ws": "core.ws_server:WebSocketProtocol",
    # What a client may send in one websocket message (API.md: a location or a resume, well under 1 KB; the
    # tracking and ops sockets take none). uvicorn's default, 16 MiB, let anyone holding a tracking link stall a
    # server process's event loop ~0.4 s per message while it was read and parsed; a larger one closes with 1009.
    "ws_max_size": 64 * 1024,
}
# uvicorn restarts a worker that misses its health check for 5 s, dropping every socket it holds; a saturated
# machine (the benchmark at load 15 on 2 cores) misses that without being stuck.
HEALTHCHECK_TIMEOUT_S = 30
APPLICATION = "config.asgi:application"

log = logging.getLogger("uvicorn.error")  # uvicorn configures it, at the server's level


class Supervisor(Multiprocess):
    def keep_subprocess_alive(self) -> None:
        watched = list(self.processes)
        super().keep_subprocess_alive()
        for old, new in zip(watched, self.processes, strict=True):
            if new is not old:
                # Killed or crashed, the worker ran no exit handler (core.metrics): its samples are folded here, or
                # the sockets it counted (relay_websocket_connections, a live gauge) stayed in every scrape of the
                # host, and its files in the metric directory, until the directory was cleared. The directory is
                # `serve`'s, which set PROMETHEUS_MULTIPROC_DIR before starting this process.
                retire_process(old.pid)
                log.warning(
                    "server process [%s] ended (exit code %s) and was replaced by [%s]; the sockets it held were "
                    "dropped and their clients reconnect",
                    old.pid,
                    old.exitcode,
                    new.pid,
                )

    def restart_all(self) -> None:
        serving = list(self.processes)
        super().restart_all()
        for old in serving:
            if old not in self.processes:
                retire_process(old.pid)

    def join_all(self) -> None:
        # A worker stopped by SIGTERM shuts down, then raises the signal again (uvicorn) and dies of it without
        # running its exit handler: its samples are folded here, or each restart left its files for good.
        super().join_all()
        for process in self.processes:
            retire_process(process.pid)


def supervise(host: str, port: int, workers: int) -> None:
    config = Config(
        APPLICATION,
        host=host,
        port=port,
        workers=workers,
        timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
        **UVICORN_OPTIONS,
    )
    Supervisor(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    supervise(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
