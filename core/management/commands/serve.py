import os
import signal
import sys

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.embedded import EmbeddedCelery

UVICORN_OPTIONS = {
    "log_level": "warning",
    # At that level uvicorn logs no request, yet with the access log on it builds each line's arguments (client
    # address, quoted path) before the logger drops it: per request, on the location pings' hot path.
    "access_log": False,
    "lifespan": "off",
    # uvicorn would take the client address from X-Forwarded-For on any connection from 127.0.0.1, so a
    # local client could pick a new address per request. Django decides instead, from NUM_PROXIES.
    "proxy_headers": False,
    # No permessage-deflate on websockets: apps and browsers offer it, and each socket that takes it keeps a zlib
    # compressor and decompressor for its life (measured: 83 KB per driver socket with it, 43 KB without, 300
    # sockets on one process); the messages are small JSON, so compression saves little bandwidth.
    "ws_per_message_deflate": False,
    # uvicorn's websockets-sansio protocol (what it picks by default), holding less per socket.
    "ws": "core.ws_server:WebSocketProtocol",
    # What a client may send in one websocket message (API.md: a location or a resume, well under 1 KB; the
    # tracking and ops sockets take none). uvicorn's default, 16 MiB, let anyone holding a tracking link stall a
    # server process's event loop ~0.4 s per message while it was read and parsed; a larger one closes with 1009.
    "ws_max_size": 64 * 1024,
}


class Command(BaseCommand):
    help = (
        "Run Relay's ASGI server (HTTP + websockets). Embedded mode (no REDIS_URL) also runs the Celery worker "
        "and beat inside this process, so one command is a running system. In production, scale out by running "
        "more of these processes behind a load balancer, with `celery -A config worker` and one `celery -A "
        "config beat` beside them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="server processes sharing the port (production mode; embedded runs one)",
        )

    def handle(self, *args, host, port, workers, **options):
        if workers > 1:
            if settings.EMBEDDED:
                raise CommandError("--workers needs production mode (REDIS_URL): embedded mode is one process")
            self.stdout.write(f"Relay serving on http://{host}:{port}/ (production, {workers} processes)")
            self.stdout.flush()
            # The supervisor only starts, watches and stops the workers: it becomes a bare uvicorn (no Django, no
            # apps: ~20 MB instead of ~85 MB); each worker imports the application itself.
            argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port)]
            argv += ["--workers", str(workers), "--log-level", "warning", "--lifespan", "off", "--no-proxy-headers"]
            argv += ["--no-access-log"]  # as UVICORN_OPTIONS says why
            argv += ["--ws-per-message-deflate", "false", "--ws", UVICORN_OPTIONS["ws"]]  # as UVICORN_OPTIONS says why
            argv += ["--ws-max-size", str(UVICORN_OPTIONS["ws_max_size"])]
            # uvicorn restarts a worker that misses its health check for 5 s, dropping every socket it holds; a
            # saturated machine (the benchmark at load 15 on 2 cores) misses that without being stuck.
            argv += ["--timeout-worker-healthcheck", "30"]
            os.execv(sys.executable, argv)
        celery = EmbeddedCelery() if settings.EMBEDDED else None
        if celery is not None:
            celery.start()
        server = uvicorn.Server(uvicorn.Config("config.asgi:application", host=host, port=port, **UVICORN_OPTIONS))
        mode = "embedded: SQLite, in-memory channel layer, Celery in-process" if settings.EMBEDDED else "production"
        self.stdout.write(f"Relay serving on http://{host}:{port}/ ({mode})")
        self.stdout.flush()
        # uvicorn shuts down gracefully on SIGINT/SIGTERM and then raises the signal again: SIGINT surfaces as a
        # KeyboardInterrupt (a traceback on every Ctrl-C) and SIGTERM's default action would kill the process
        # before the embedded Celery stops. Both are the normal way out here.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            if celery is not None:
                celery.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
