import asyncio
import contextlib
import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from deliveries.simulation.behaviour import Mix
from deliveries.simulation.fleet import Fleet, FleetConfig, configure_logging, until_stopped

DRIVER_PREFIX = "demo-driver-"
DEMO_PASSWORD = "demo-pass"
DEMO_ZONES = Path(settings.BASE_DIR) / "tests" / "data" / "demo_zones.geojson"


def driver_usernames(options) -> list[str]:
    if options.get("driver_list"):
        return [name.strip() for name in options["driver_list"].split(",") if name.strip()]
    prefix = options.get("driver_prefix", DRIVER_PREFIX)
    return [f"{prefix}{number:02d}" for number in range(1, options["drivers"] + 1)]


def add_fleet_arguments(parser, *, drivers: int, rate: float, speedup: float) -> None:
    """The options `simulate` and `demo` share."""
    parser.add_argument("--drivers", type=int, default=drivers, help="how many drivers (prefix01, prefix02, ...)")
    parser.add_argument("--rate", type=float, default=rate, help="deliveries the merchant creates per minute")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--mix", default="accept=0.8,decline=0.1,ignore=0.1", help="how drivers answer offers")
    parser.add_argument("--speedup", type=float, default=speedup, help="drivers ride this many times faster")
    parser.add_argument("--seed", type=int, default=None, help="replay the same choices")


class Command(BaseCommand):
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
        config = fleet_config(options, url=options["url"], zones=options["zones"])
        config.merchant, config.merchant_password = options["merchant"] or None, options["merchant_password"]
        configure_logging(level=logging.INFO if options["verbosity"] > 1 else logging.WARNING)
        fleet = Fleet(config)
        self.stdout.write(f"simulating {len(config.drivers)} drivers and {config.rate_per_min:g} deliveries/min")
        # Ctrl-C or SIGTERM ends the run; the drivers have signed off by then.
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            asyncio.run(until_stopped(fleet.run()))
        self.stdout.write(fleet.summary())


def fleet_config(options, *, url: str, zones: Path) -> FleetConfig:
    try:
        mix = Mix.parse(options["mix"])
    except ValueError as exc:
        raise CommandError(f"--mix: {exc}") from exc
    if options["speedup"] <= 0:
        raise CommandError("--speedup must be positive")
    return FleetConfig(
        url=url,
        drivers=driver_usernames(options),
        password=options.get("password", DEMO_PASSWORD),
        zones_file=zones,
        rate_per_min=options["rate"],
        duration_s=options["duration"],
        mix=mix,
        speedup=options["speedup"],
        seed=options["seed"],
    )
