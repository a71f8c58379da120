"""Delivered deliveries behind the bench's drivers (round 16): a database that has served holds far more finished
deliveries than open ones, and a read that touches a driver's history, not just what they carry now, grows with
it; so do the plans PostgreSQL picks. Used by `bench.seed` (every driver) and `bench.dispatch_cpu --history N`."""

from django.db import connection

from deliveries.models import Delivery, DeliveryStatus, Merchant
from zones.models import Zone


def add_history(merchant: Merchant, zone: Zone, per_driver: int, driver_ids: list[str] | None = None) -> None:
    """`per_driver` delivered deliveries for each driver (every driver when `driver_ids` is None), over the last 30
    days: one made through the ORM, copied in one INSERT … SELECT with its own id, external id, tracking token,
    driver and times (every other column as the ORM wrote it). Then ANALYZE, as a served database has statistics."""
    if per_driver <= 0:
        return
    lat, lng = zone.centre
    template = Delivery.objects.create(
        merchant=merchant,
        external_id=f"history-template-{merchant.pk}",
        zone=zone,
        pickup_name="Shop",
        pickup_address="Rua A 1",
        pickup_lat=lat,
        pickup_lng=lng,
        dropoff_name="Customer",
        dropoff_address="Rua B 2",
        dropoff_lat=lat + 0.01,
        dropoff_lng=lng + 0.01,
        distance_km=1.5,
        fee="4.50",
        status=DeliveryStatus.DELIVERED,
    )
    step = f"(g * interval '30 days' / {int(per_driver)})"
    given = {
        "id": "gen_random_uuid()",
        "external_id": "'history-' || d.id || '-' || g",
        "tracking_token": "md5(d.id || '-' || g)",
        "driver_id": "d.id",
        "created_at": f"now() - {step} - interval '40 minutes'",
        "assigned_at": f"now() - {step} - interval '35 minutes'",
        "picked_up_at": f"now() - {step} - interval '20 minutes'",
        "status_changed_at": f"now() - {step}",
        "finished_at": f"now() - {step}",
    }
    quote = connection.ops.quote_name
    table = quote(Delivery._meta.db_table)
    columns = [field.column for field in Delivery._meta.concrete_fields]
    values = [given.get(column, f"t.{quote(column)}") for column in columns]
    drivers, params = "(SELECT id FROM drivers_driver)", []
    if driver_ids is not None:
        drivers, params = "(SELECT unnest(%s::uuid[]) AS id)", [driver_ids]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) SELECT {', '.join(values)} "
            f"FROM {table} t, {drivers} d, generate_series(1, %s) g WHERE t.id = %s",
            [*params, per_driver, template.pk],
        )
        cursor.execute(f"ANALYZE {table}")
    template.delete()
