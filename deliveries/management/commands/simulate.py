import asyncio
import contextlib
import logging
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from simulator.cli import DEMO_PASSWORD, DEMO_ZONES, DRIVER_PREFIX, add_fleet_arguments, fleet_config
from simulator.fleet import Fleet, configure_logging, until_stopped


class Command(BaseCommand):
    """A launcher: the fleet itself is the `simulator` package, a client of Relay's public API."""

    help = (
        "Run a simulated fleet and merchant against a running Relay, through its public REST and websocket "
        "API only. Accounts must exist (see `manage.py demo --setup-only`)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the Relay to drive")
        add_fleet_arguments(parser, drivers=10, rate=6, speedup=1)
        parser.add_argument("--driver-prefix", default=DRIVER_PREFIX)
        parser.add_argument("--driver-list", default="", help="comma-separated driver usernames (overrides --drivers)")
        parser.add_argument("--password", default=DEMO_PASSWORD, help="the drivers' password")
        parser.add_argument("--merchant", default="demo-merchant", help="merchant username ('' for none)")
        parser.add_argument("--merchant-password", default=DEMO_PASSWORD)
        parser.add_argument("--zones", type=Path, default=DEMO_ZONES, help="GeoJSON of the zones to order inside")

    def handle(self, *args, **options):
        try:
            config = fleet_config(options, url=options["url"], zones=options["zones"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        config.merchant, config.merchant_password = options["merchant"] or None, options["merchant_password"]
        configure_logging(level=logging.INFO if options["verbosity"] > 1 else logging.WARNING)
        fleet = Fleet(config)
        self.stdout.write(f"simulating {len(config.drivers)} drivers and {config.rate_per_min:g} deliveries/min")
        # Ctrl-C or SIGTERM ends the run; the drivers have signed off by then.
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(until_stopped(fleet.run()))
        self.stdout.write(fleet.summary())
