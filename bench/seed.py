"""Bulk fixtures for the benchmarks, run as `python -m bench.seed OUT.json N_DRIVERS N_LISTENED` with the app's
environment (it sets Django up). Writes accounts and drivers to PostgreSQL and the drivers' positions to the
Redis location index directly (the key layout of drivers/locations.py), then the fixture file the load
generators read: tokens, ids and positions.

Placement makes the dispatch benchmark's chosen driver one whose websocket is listened to: the first N_LISTENED
drivers sit on a grid (~330 m apart) and every pickup is put on one of them; they have room for many deliveries
(capacity 1000), so they stay `available` after accepting. The other drivers are spread at random over the zones,
never within 100 m of a grid driver, online but on a break: each dispatch finds and weighs them (the nearest 50,
read with everything that can exclude them, as before), but none can take the offer. Available, they would: a grid
driver carrying earlier deliveries is not idle, and the near-tie rule (SPEC 2.1) gives the offer to an idle driver
a few seconds further away (round 15). The tracking benchmark ends the break of the drivers it uses.

Every driver also has a history: HISTORY deliveries delivered over the last 30 days (round 16). A database that has
served holds far more finished deliveries than open ones, and a read that touches a driver's history, not just
what they carry now, grows with it: on a database seeded without any, the dispatch benchmark could not see that.
"""

import json
import math
import os
import random
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.history import add_history  # noqa: E402
from deliveries.models import Merchant  # noqa: E402
from drivers.models import Driver  # noqa: E402
from zones.models import Zone  # noqa: E402

GRID = 10  # per zone side: 10 x 10 grid drivers per zone
MARGIN_DEG = 0.001  # ~100 m away from zone borders
EXCLUSION_M = 100.0
BATCH = 1000
HISTORY = 30  # delivered deliveries per driver, over the last 30 days


def _meters(lat1, lng1, lat2, lng2) -> float:
    dy = (lat2 - lat1) * 111_320
    dx = (lng2 - lng1) * 111_320 * math.cos(math.radians(lat1))
    return math.hypot(dx, dy)


def _grid(zone: Zone) -> list[tuple[float, float]]:
    lat0, lat1 = zone.min_lat + MARGIN_DEG, zone.max_lat - MARGIN_DEG
    lng0, lng1 = zone.min_lng + MARGIN_DEG, zone.max_lng - MARGIN_DEG
    return [
        (lat0 + (lat1 - lat0) * (i + 0.5) / GRID, lng0 + (lng1 - lng0) * (j + 0.5) / GRID)
        for i in range(GRID)
        for j in range(GRID)
    ]


def _placements(zones: list[Zone], n_drivers: int, n_listened: int, rng: random.Random):
    per_zone = [[(zone, lat, lng) for lat, lng in _grid(zone)] for zone in zones]
    # Interleave zones so that any prefix of the listened drivers covers every zone.
    grid = [spots[k] for k in range(GRID * GRID) for spots in per_zone]
    if n_listened > len(grid):
        raise SystemExit(f"at most {len(grid)} listened drivers fit the grid")
    listened = grid[:n_listened]
    out = [(zone, lat, lng, True) for zone, lat, lng in listened]
    while len(out) < n_drivers:
        zone = rng.choice(zones)
        lat = rng.uniform(zone.min_lat + MARGIN_DEG, zone.max_lat - MARGIN_DEG)
        lng = rng.uniform(zone.min_lng + MARGIN_DEG, zone.max_lng - MARGIN_DEG)
        if not zone.contains(lat, lng):
            continue
        near = any(_meters(lat, lng, glat, glng) < EXCLUSION_M for gzone, glat, glng in listened if gzone is zone)
        if not near:
            out.append((zone, lat, lng, False))
    return out


def _lower_bound_tables() -> None:
    with connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS bench_lb_offer (id uuid PRIMARY KEY, driver_id uuid NOT NULL, "
            "status varchar(16) NOT NULL, sent_at timestamptz NOT NULL, responded_at timestamptz, payload jsonb)"
        )


def main(out: Path, n_drivers: int, n_listened: int) -> None:
    rng = random.Random(5)
    now = timezone.now()
    zones = list(Zone.objects.filter(active=True).order_by("code"))
    User = get_user_model()
    password = make_password("bench-pass-123")
    placements = _placements(zones, n_drivers, n_listened, rng)

    with transaction.atomic():
        merchant_user = User.objects.create(username="bench-merchant", password=password)
        Merchant.objects.create(user=merchant_user, name="Bench Shop")
        merchant_token = Token.objects.create(user=merchant_user, key=secrets.token_hex(20)).key
        users = User.objects.bulk_create(
            [User(username=f"bench-driver-{i:05d}", password=password) for i in range(n_drivers)], batch_size=BATCH
        )
        tokens = Token.objects.bulk_create(
            [Token(user=user, key=secrets.token_hex(20)) for user in users], batch_size=BATCH
        )
        drivers = Driver.objects.bulk_create(
            [
                Driver(
                    user=user,
                    name=f"Bench Driver {i:05d}",
                    vehicle="bicycle",
                    home_zone=zone,
                    capacity=1000 if listened else 1,
                    state="available" if listened else "on_break",
                    state_changed_at=now - timedelta(days=1 if listened else 0, seconds=i),
                    last_lat=lat,
                    last_lng=lng,
                    last_seen_at=now,
                    current_zone=zone,
                )
                for i, (user, (zone, lat, lng, listened)) in enumerate(zip(users, placements, strict=True))
            ],
            batch_size=BATCH,
        )
        _lower_bound_tables()
        add_history(Merchant.objects.get(user=merchant_user), zones[0], HISTORY)
    if connection.vendor == "postgresql":
        # A database that has served for a while has planner statistics; one bulk-loaded a moment ago has none
        # until autovacuum gets to it (often after the run), and its plans are not production's.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    client = redis.Redis.from_url(settings.RELAY_LOCATION_REDIS_URL)
    prefix = settings.RELAY_REDIS_KEY_PREFIX
    pipe = client.pipeline(transaction=False)
    for driver, (zone, lat, lng, _listened) in zip(drivers, placements, strict=True):
        pipe.geoadd(f"{prefix}geo:{zone.code}", (lng, lat, str(driver.pk)))
    pipe.zadd(f"{prefix}seen", {str(d.pk): now.timestamp() for d in drivers})
    pipe.execute()

    fixture = {
        "merchant_token": merchant_token,
        "zones": [zone.code for zone in zones],
        "drivers": [
            {"id": str(d.pk), "token": t.key, "zone": zone.code, "lat": lat, "lng": lng, "listened": listened}
            for d, t, (zone, lat, lng, listened) in zip(drivers, tokens, placements, strict=True)
        ],
    }
    out.write_text(json.dumps(fixture))
    print(f"seeded {len(drivers)} drivers ({n_listened} on the listened grid) in {len(zones)} zones")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
