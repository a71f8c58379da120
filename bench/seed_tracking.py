"""Deliveries on their way for the tracking fan-out benchmark, run as `python -m bench.seed_tracking FIXTURE.json
OUT.json N` with the app's environment (it sets Django up): N of the seeded drivers that are not on the dispatch
grid each get a delivery, forced onto them by ops and picked up, through the app's own actions, so every
driver's pings feed one delivery's tracking sockets. Writes the tracking tokens and driver tokens it used."""

import json
import os
import sys
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from core.audit import Actor  # noqa: E402
from deliveries.models import Merchant  # noqa: E402
from deliveries.serializers import DeliveryCreateInput  # noqa: E402
from deliveries.services.availability import end_break  # noqa: E402
from deliveries.services.creation import create_delivery  # noqa: E402
from deliveries.services.progress import pick_up_delivery  # noqa: E402
from deliveries.services.reassignment import force_assign  # noqa: E402
from drivers.models import Driver  # noqa: E402

DROPOFF_OFFSET_DEG = 0.008  # ~900 m north of the pickup


def main(fixture_path: Path, out: Path, n: int) -> None:
    fixture = json.loads(fixture_path.read_text())
    riders = [d for d in fixture["drivers"] if not d["listened"]][:n]
    merchant = Merchant.objects.get(name="Bench Shop")
    bench = Actor.system("bench")
    tracked = []
    for i, rider in enumerate(riders):
        place = {"name": "Bench", "address": "Rua Bench 1", "lat": rider["lat"], "lng": rider["lng"]}
        dropoff = place | {"lat": rider["lat"] + DROPOFF_OFFSET_DEG, "name": "Customer"}
        data = DeliveryCreateInput(data={"external_id": f"track-{i}", "pickup": place, "dropoff": dropoff})
        data.is_valid(raise_exception=True)
        delivery, _ = create_delivery(merchant=merchant, data=data.validated_data)
        end_break(rider["id"], actor=Actor.driver(Driver.objects.get(pk=rider["id"])))  # seeded on a break
        force_assign(delivery.pk, driver_id=rider["id"], actor=bench)
        pick_up_delivery(delivery.pk, actor=Actor.driver(Driver.objects.get(pk=rider["id"])))
        tracked.append(rider | {"tracking_token": delivery.tracking_token, "delivery_id": str(delivery.pk)})
    out.write_text(json.dumps(tracked))
    print(f"{len(tracked)} deliveries picked up, one per driver")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
