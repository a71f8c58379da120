import asyncio
import io
import logging
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.urls import reverse

from core.processes import stop_process
from simulator.cli import DEMO_PASSWORD, DEMO_ZONES, DRIVER_PREFIX, add_fleet_arguments, driver_usernames, fleet_config
from simulator.client import Account
from simulator.fleet import Fleet, configure_logging, until_stopped

OPS_USER, OPS_PASSWORD = "admin", "admin-pass"
MERCHANT = "demo-merchant"
FIRST_NAMES = ["Ana", "Bruno", "Carla", "Diogo", "Eva", "Filipe", "Gita", "Hugo", "Inês", "João", "Kiko", "Lara"]
VEHICLES = ["bicycle", "scooter", "car"]
STATUSES = ["pending", "offered", "assigned", "picked_up", "delivered", "cancelled", "failed"]
TRACKING_LINKS = 3


class Command(BaseCommand):
    help = (
        "Set up demo zones and accounts (idempotent), run the server with a simulated fleet and merchant, and "
        "print where to look and a live status line until Ctrl-C (or --duration)."
    )

    def add_arguments(self, parser):
        add_fleet_arguments(parser, drivers=12, rate=6, speedup=20)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
        parser.add_argument("--log", type=Path, default=Path("demo.log"), help="the server's log file")
        parser.add_argument("--setup-only", action="store_true", help="create zones and accounts, then exit")

    def handle(self, *args, **options):
        if options["drivers"] < 1:
            raise CommandError("--drivers must be at least 1")
        usernames = driver_usernames(options)
        self.set_up(usernames)
        if options["setup_only"]:
            self.stdout.write("demo zones and accounts ready")
            return
        url = f"http://{options['host']}:{options['port']}"
        try:
            fleet = Fleet(fleet_config(options, url=url, zones=DEMO_ZONES))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        fleet.config.merchant, fleet.config.merchant_password = MERCHANT, DEMO_PASSWORD
        fleet_log = options["log"].with_name(options["log"].stem + "-fleet" + options["log"].suffix)
        configure_logging(level=logging.INFO, path=fleet_log)
        server = self.start_server(options, url)
        try:
            self.banner(url, options, fleet_log, usernames)
            watching = self.watch(fleet, url, every=options["status_every"], server=server, log=options["log"])
            asyncio.run(until_stopped(watching))
        except (KeyboardInterrupt, asyncio.CancelledError):
            self.stdout.write("\nstopping…")
        finally:
            stop_process(server)
        self.stdout.write("fleet: " + fleet.summary())

    # --- setup ------------------------------------------------------------------------------------------
    def set_up(self, usernames: list[str]) -> None:
        quiet = io.StringIO()
        call_command("load_zones", str(DEMO_ZONES), stdout=quiet)
        call_command("create_ops", OPS_USER, password=OPS_PASSWORD, superuser=True, stdout=quiet)
        call_command("create_merchant", MERCHANT, password=DEMO_PASSWORD, name="Demo Kitchen", stdout=quiet)
        zones = ["centro", "norte", "este"]
        for index, username in enumerate(usernames):
            name = f"{FIRST_NAMES[index % len(FIRST_NAMES)]} {username.removeprefix(DRIVER_PREFIX)}"
            call_command(
                "create_driver",
                username,
                password=DEMO_PASSWORD,
                zone=zones[index % len(zones)],
                vehicle=VEHICLES[index % len(VEHICLES)],
                name=name,
                stdout=quiet,
            )
        # The server is another process: let it see everything committed, and SQLite not see two writers here.
        connections.close_all()

    # --- the server -----------------------------------------------------------------------------------
    def start_server(self, options, url: str) -> subprocess.Popen:
        log_path = options["log"]
        with socket.socket() as probe:
            # Another server on this port would answer the readiness check in place of ours.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
            try:
                probe.bind((options["host"], options["port"]))
            except OSError as exc:
                raise CommandError(f"cannot listen on {options['host']}:{options['port']} ({exc}); try --port") from exc
        env = dict(os.environ)
        env.setdefault("RELAY_PUBLIC_URL", url)
        env.setdefault("WEBHOOK_ALLOW_PRIVATE_TARGETS", "1")  # a demo merchant's webhook may point at this machine
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "serve"]
        command += ["--host", options["host"], "--port", str(options["port"])]
        with open(log_path, "ab") as log:
            # Its own session: Ctrl-C reaches only this command, which then stops the server in order.
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if not settings.EMBEDDED:
            self.stdout.write("REDIS_URL is set: run `celery -A config worker` and `celery -A config beat` beside it.")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise CommandError(f"the server exited ({server.returncode}); see {log_path}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        stop_process(server)
        raise CommandError(f"the server did not answer on {url} within 60 s; see {log_path}")

    def banner(self, url: str, options, fleet_log: Path, usernames: list[str]) -> None:
        yesterday = datetime.now(UTC).date() - timedelta(days=1)  # the seeded history's last day
        lines = [
            "",
            f"Relay demo on {url}  (logs: server {options['log']}, simulated fleet {fleet_log})",
            f"  admin console  {url}/admin/   login {OPS_USER} / {OPS_PASSWORD}",
            f"  API accounts   merchant {MERCHANT} / {DEMO_PASSWORD}; drivers {usernames[0]}…{usernames[-1]} / "
            f"{DEMO_PASSWORD}  (a token: POST {url}/api/v1/auth/token)",
            f"  live ops board {url}/ops/board/  (zones by band, surge, escalations; updated every minute)",
            f"  KPI dashboard  {url}{reverse('admin:analytics_dashboard')}  (charts of the seeded history)",
            f"  metrics        {url}/metrics  (Prometheus; as a logged-in ops user)   health: {url}/readyz",
            f"  API docs       {url}/api/docs/  (reference: {url}/api/redoc/)",
            f"  policy replay  .venv/bin/python manage.py replay --day {yesterday} --set offer_timeout_s=15"
            "  (a seeded day again, under a shorter offer timeout)",
            f"  drivers ride {options['speedup']:g}× faster than real; the merchant orders {options['rate']:g}/min.",
            "  Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))

    # --- the live status ------------------------------------------------------------------------------
    async def watch(self, fleet: Fleet, url: str, *, every: float, server: subprocess.Popen, log: Path) -> None:
        """The fleet runs, a status line every `every` seconds, until Ctrl-C or the server stops: a server that died
        left the demo printing "?" and a growing error count, as if it were still running."""
        task = asyncio.create_task(fleet.run())
        shown_links = 0
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            ops, merchant = Account(http, OPS_USER, Counter()), Account(http, MERCHANT, Counter())
            await ops.login(OPS_PASSWORD)
            await merchant.login(DEMO_PASSWORD)
            started = time.monotonic()
            try:
                while not task.done():
                    await asyncio.wait([task], timeout=every)
                    if server.poll() is not None:
                        raise CommandError(f"the server stopped ({server.returncode}); see {log}")
                    if shown_links < TRACKING_LINKS and fleet.created:
                        links = [d["tracking_url"] for d in fleet.created[shown_links:TRACKING_LINKS]]
                        for link in links:
                            self.stdout.write(f"  tracking link  {link}")
                        shown_links += len(links)
                    self.stdout.write(await self.status_line(ops, merchant, fleet, time.monotonic() - started))
            finally:
                task.cancel()  # on Ctrl-C: the fleet signs its drivers off before the server stops
                await asyncio.gather(task, return_exceptions=True)

    async def status_line(self, ops: Account, merchant: Account, fleet: Fleet, elapsed: float) -> str:
        counts = [await merchant.count("/api/v1/deliveries", status=status) for status in STATUSES]
        escalations = await ops.count("/api/v1/ops/escalations", open="true")
        zones = await ops.request("GET", "/api/v1/ops/zones")
        bands = (
            ", ".join(f"{z['code']} {z['band']}" for z in zones.body["results"])
            if zones is not None and zones.ok
            else "?"
        )
        shown = " ".join(f"{status} {'?' if n is None else n}" for status, n in zip(STATUSES, counts, strict=True))
        stats = fleet.stats
        return (
            f"[{elapsed:5.0f}s] {shown} | open escalations {'?' if escalations is None else escalations}"
            f" | offers {stats['offers']} accepted {stats['accepted']} declined {stats['offers_decline']}"
            f" ignored {stats['offers_ignore']} released {stats['released']} errors {stats['request_errors']}"
            f" | bands {bands}"
        )
