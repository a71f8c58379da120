import functools
from datetime import datetime

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from core.audit import Actor
from core.permissions import ops_group
from deliveries.models import Delivery, Merchant, Offer, OfferStatus
from deliveries.serializers import DeliveryCreateInput
from deliveries.services.availability import go_online
from deliveries.services.creation import create_delivery
from drivers import locations
from drivers.models import Driver
from zones.models import Zone

PASSWORD = "secret-pass-123"
# Points inside the demo zones (tests/data/demo_zones.geojson).
CENTRO = (38.715, -9.14)
NORTE = (38.745, -9.14)
ESTE = (38.715, -9.10)
OUTSIDE = (40.0, -3.7)
KM_PER_DEGREE_OF_LONGITUDE = 87.0  # at Lisbon's latitude


@functools.cache
def _password_hash() -> str:
    # Hashed once for every test user: PBKDF2 costs seconds a user on a busy machine. A real hash still, so a
    # server started in a subprocess (its own settings) accepts the password. Always PBKDF2, the settings' own:
    # hashed first inside a test that puts a quicker hasher first (test_login_security), the hash every later
    # test's users get would be one the settings no longer accept, and their logins would fail.
    return make_password(PASSWORD, hasher="pbkdf2_sha256")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.LazyFunction(_password_hash)


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


def east(km: float) -> tuple[float, float]:
    """A point `km` east of CENTRO (still inside centro for a few km): distances to pickup at a glance."""
    lat, lng = CENTRO
    return lat, lng + km / KM_PER_DEGREE_OF_LONGITUDE


def new_delivery(merchant: Merchant, external_id: str = "order-1", **extra) -> Delivery:
    """A delivery created through the action, from input validated as the API validates it (and so dispatched)."""
    data = DeliveryCreateInput(data=delivery_payload(external_id, **extra))
    data.is_valid(raise_exception=True)
    delivery, _ = create_delivery(merchant=merchant, data=data.validated_data)
    return delivery


def delivery_via_api(merchant_api, external_id: str = "order-1", **extra) -> Delivery:
    """A delivery the merchant created with `POST /api/v1/deliveries`."""
    response = merchant_api.post("/api/v1/deliveries", delivery_payload(external_id, **extra), format="json")
    assert response.status_code == 201, response.content
    return Delivery.objects.get(pk=response.json()["id"])


def pending_offer(delivery: Delivery) -> Offer:
    return Offer.objects.get(delivery=delivery, status=OfferStatus.PENDING)


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


def assigned_delivery(merchant: Merchant, driver: Driver, external_id: str = "order-1", **extra) -> Delivery:
    """A delivery offered to `driver` (the only candidate nearby) and accepted by them."""
    from deliveries.services.offers import accept_offer

    delivery = new_delivery(merchant, external_id, **extra)
    accept_offer(pending_offer(delivery).pk, actor=Actor.driver(driver))
    delivery.refresh_from_db()
    return delivery
