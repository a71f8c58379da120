"""The server's CPU per create + dispatch + accept, in process: `python -m bench.dispatch_cpu [--ops N]
[--candidates N] [--history N]` with the app's environment (DATABASE_URL of a migrated PostgreSQL database,
REDIS_URL). Issue 12's figure without `make bench`'s servers, load generators and noise: each operation goes
through the real request stack — `config.asgi.application` called as uvicorn calls it (the location-ingest
wrapper, Django's ASGI handler and its thread hop, the middleware, DRF, token authentication and the throttle)
— and `time.process_time()` around the two requests counts every thread of this process: all of the server's
Python, none of PostgreSQL's or Redis's. It also prints the waits per operation (voluntary context switches), a
figure that, unlike CPU time, does not drift with the machine's speed.

Its fixtures are its own (names and Redis key prefix carry a random run id; the rows stay, its Redis keys
are deleted at the end): the demo zones if
the database has none, a merchant, and N available drivers with capacity 1000 (they stay available after
accepting, as the bench's listened drivers do) around one pickup in centro, their positions written to the
location index through `record_positions`. Offers' expiry tasks go to an in-memory broker (CELERY_BROKER_URL
unless set), so no worker ever runs them. Where the CPU goes: run it under py-spy and read the profile with
`bench.spy_shares` (its docstring has the command line).
"""

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import time
import uuid

import django

RUN = uuid.uuid4().hex[:8]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret-0123456789abcdef0123456789abcdef")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("DB_POOL_SIZE", "10")  # as `make bench` serves
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["RELAY_REDIS_KEY_PREFIX"] = f"relay-cpu-{RUN}:"
django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.common import asgi_post  # noqa: E402
from bench.history import add_history  # noqa: E402
from config.asgi import application  # noqa: E402
from core.audit import Actor  # noqa: E402
from deliveries.models import Merchant, Offer, OfferStatus  # noqa: E402
from deliveries.services.availability import go_online  # noqa: E402
from drivers import locations  # noqa: E402
from drivers.models import Driver  # noqa: E402
from zones.models import Zone  # noqa: E402

ZONES = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "demo_zones.geojson")
KM_PER_DEGREE = 111.32


# --- fixtures ---------------------------------------------------------------------------------------------
def _fixtures(candidates: int) -> tuple[str, tuple[float, float], dict[str, str]]:
    """The merchant's token, the pickup, and each driver's token by driver id."""
    if not Zone.objects.exists():
        call_command("load_zones", ZONES, stdout=io.StringIO())
    centro = Zone.objects.get(code="centro")
    users = get_user_model().objects
    merchant_user = users.create(username=f"cpu-{RUN}-merchant")
    Merchant.objects.create(user=merchant_user, name="CPU Shop")
    merchant_token = Token.objects.create(user=merchant_user).key
    tokens = {}
    for i in range(candidates):
        user = users.create(username=f"cpu-{RUN}-driver-{i:03d}")
        driver = Driver.objects.create(
            user=user, name=f"CPU Driver {i:03d}", vehicle="bicycle", capacity=1000, home_zone=centro
        )
        go_online(driver.pk, actor=Actor.driver(driver))
        tokens[str(driver.pk)] = Token.objects.create(user=user).key
    return merchant_token, centro.centre, tokens


def _place_drivers(driver_ids: list[str], pickup: tuple[float, float]) -> None:
    """Every driver 0.2-1.5 km east of the pickup, seen now (dispatch ignores positions older than 60 s)."""
    lat, lng = pickup
    for i, driver_id in enumerate(driver_ids):
        km = 0.2 + 1.3 * i / max(1, len(driver_ids) - 1)
        point = locations.Point(lat, lng + km / (KM_PER_DEGREE * 0.78), timezone.now())
        locations.record_positions(driver_id, [point], online=True)


def _delivery(external_id: str, pickup: tuple[float, float]) -> bytes:
    lat, lng = pickup
    return json.dumps(
        {
            "external_id": external_id,
            "pickup": {"name": "CPU Shop", "address": "Rua A 1", "lat": lat, "lng": lng, "phone": "+351210000000"},
            "dropoff": {"name": "Ana", "address": "Rua B 2", "lat": lat + 0.01, "lng": lng + 0.01},
            "notes": "2nd floor",
        }
    ).encode()


def _waits() -> int:
    """This process's voluntary context switches so far: each time one of its threads waited (a round trip to
    PostgreSQL or Redis, a hop between the event loop and a request thread, the GIL). Unlike CPU time it does not
    move with the machine's speed, so it compares two versions of the code run at different moments."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def _drop_redis_keys() -> None:
    """This run's location index and trail keys (its database rows stay: they are ordinary history)."""
    client = redis.Redis.from_url(settings.RELAY_LOCATION_REDIS_URL)
    keys = list(client.scan_iter(f"{settings.RELAY_REDIS_KEY_PREFIX}*"))
    if keys:
        client.delete(*keys)


# --- the run ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=100, help="measured create + accept pairs")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured pairs first (caches, connections)")
    parser.add_argument("--candidates", type=int, default=50, help="available drivers in reach")
    parser.add_argument(
        "--history", type=int, default=0, help="delivered deliveries each driver has behind them (e.g. 300: a month)"
    )
    args = parser.parse_args()

    merchant_token, pickup, driver_tokens = _fixtures(args.candidates)
    driver_ids = list(driver_tokens)
    add_history(
        Merchant.objects.get(user__username=f"cpu-{RUN}-merchant"),
        Zone.objects.get(code="centro"),
        args.history,
        driver_ids,
    )
    loop = asyncio.new_event_loop()
    create_cpu, accept_cpu, wall, switches = [], [], [], []
    for i in range(args.warmup + args.ops):
        if i % 20 == 0:
            _place_drivers(driver_ids, pickup)
        measured = i >= args.warmup
        started, started_wall, started_switches = time.process_time(), time.perf_counter(), _waits()
        status, body = loop.run_until_complete(
            asgi_post(application, "/api/v1/deliveries", merchant_token, _delivery(f"cpu-{RUN}-{i}", pickup))
        )
        created = time.process_time()
        if status != 201:
            raise SystemExit(f"create answered {status}: {body[:500]!r}")
        offer = Offer.objects.filter(delivery_id=json.loads(body)["id"], status=OfferStatus.PENDING).first()
        if offer is None:
            raise SystemExit(f"delivery {json.loads(body)['id']} was not offered to anyone")
        accept_started = time.process_time()
        status, body = loop.run_until_complete(
            asgi_post(application, f"/api/v1/offers/{offer.pk}/accept", driver_tokens[str(offer.driver_id)], b"")
        )
        accepted, accepted_wall = time.process_time(), time.perf_counter()
        if status != 200:
            raise SystemExit(f"accept answered {status}: {body[:500]!r}")
        if measured:
            create_cpu.append(created - started)
            accept_cpu.append(accepted - accept_started)
            wall.append(accepted_wall - started_wall)
            switches.append(_waits() - started_switches)
    loop.close()
    _drop_redis_keys()

    def ms(values: list[float]) -> str:
        return f"mean {statistics.fmean(values) * 1000:6.2f} ms, median {statistics.median(values) * 1000:6.2f} ms"

    total = [c + a for c, a in zip(create_cpu, accept_cpu, strict=True)]
    print(f"{args.ops} operations, {args.candidates} candidates in reach, {args.history} delivered deliveries each")
    print(f"  CPU create + dispatch: {ms(create_cpu)}")
    print(f"  CPU accept:            {ms(accept_cpu)}")
    print(f"  CPU per operation:     {ms(total)}")
    print(f"  wall per operation:    {ms(wall)}")
    print(f"  waits per operation:   mean {statistics.fmean(switches):6.1f}, median {statistics.median(switches):g}")


if __name__ == "__main__":
    main()
