"""The fleet's command-line options, shared by `manage.py simulate` and `manage.py demo`."""

from pathlib import Path

from simulator.behaviour import Mix
from simulator.fleet import FleetConfig

DRIVER_PREFIX = "demo-driver-"
DEMO_PASSWORD = "demo-pass"
# The demo's zones (also the tests'): where the merchant orders and the drivers ride.
DEMO_ZONES = Path(__file__).resolve().parent.parent / "tests" / "data" / "demo_zones.geojson"


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


def fleet_config(options, *, url: str, zones: Path) -> FleetConfig:
    """The fleet the options ask for. Raises ValueError, naming the option, when one is not valid."""
    try:
        mix = Mix.parse(options["mix"])
    except ValueError as exc:
        raise ValueError(f"--mix: {exc}") from exc
    if options["speedup"] <= 0:
        raise ValueError("--speedup must be positive")
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
