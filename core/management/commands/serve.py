import os
import signal
import sys

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.embedded import EmbeddedCelery
from core.supervisor import APPLICATION, UVICORN_OPTIONS


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
            # The supervisor only starts, watches and stops the workers: a process of its own without Django
            # (core/supervisor.py); each worker imports the application itself.
            argv = [sys.executable, "-m", "core.supervisor", host, str(port), str(workers)]
            os.execv(sys.executable, argv)
        celery = EmbeddedCelery() if settings.EMBEDDED else None
        if celery is not None:
            celery.start()
        server = uvicorn.Server(uvicorn.Config(APPLICATION, host=host, port=port, **UVICORN_OPTIONS))
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
