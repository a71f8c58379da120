from datetime import datetime

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from core.audit import Actor
from core.permissions import ops_group
from deliveries.models import Merchant
from deliveries.services.availability import go_online
from drivers import locations
from drivers.models import Driver
from zones.models import Zone

# Points inside the demo zones (tests/data/demo_zones.geojson).
CENTRO = (38.715, -9.14)
NORTE = (38.745, -9.14)
ESTE = (38.715, -9.10)
OUTSIDE = (40.0, -3.7)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("secret-pass-123")


class OpsUserFactory(UserFactory):
    """Staff in the ops group, as `manage.py create_ops` makes them."""

    class Meta:
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"ops{n}")
    is_staff = True

    @factory.post_generation
    def ops_group(user, create, extracted, **kwargs):
        if create:
            user.groups.add(ops_group())


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"merchant{n}"))
    name = factory.Sequence(lambda n: f"Shop {n}")


class DriverFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Driver

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"driver{n}"))
    name = factory.Sequence(lambda n: f"Driver{n} Surname")
    vehicle = "bicycle"
    home_zone = factory.LazyFunction(lambda: Zone.objects.get(code="centro"))


def delivery_payload(external_id: str = "order-1", pickup=CENTRO, dropoff=(38.72, -9.13), **extra) -> dict:
    return {
        "external_id": external_id,
        "pickup": {
            "name": "Pizza Place",
            "address": "Rua A 1",
            "lat": pickup[0],
            "lng": pickup[1],
            "phone": "+351 1",
        },
        "dropoff": {
            "name": "Ana Customer",
            "address": "Rua B 2",
            "lat": dropoff[0],
            "lng": dropoff[1],
            "phone": "+351 2",
        },
        **extra,
    }


def online_driver(lat: float, lng: float, *, seen_at: datetime | None = None, **kwargs) -> Driver:
    """A driver who went online and sent a location: a dispatch candidate."""
    driver = DriverFactory(**kwargs)
    go_online(driver.pk, actor=Actor.driver(driver))
    driver.refresh_from_db()
    ping(driver, lat, lng, seen_at=seen_at)
    return driver


def ping(driver: Driver, lat: float, lng: float, *, seen_at: datetime | None = None) -> None:
    points = [locations.Point(lat, lng, seen_at or timezone.now())]
    locations.record_positions(driver.pk, points, online=driver.state != "offline")
