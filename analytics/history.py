"""A made-up but realistic past for the dashboards (`manage.py seed_history`): each day, drivers come online,
merchants send deliveries, drivers accept, decline, let offers expire, release, pick up and deliver, ops
acknowledge escalations; all through Relay's own actions, on a clock moved through the day (time-machine), so
the audit trail, costs and rollups are exactly what real days leave behind."""

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from analytics.rollup import roll_up_day
from analytics.simclock import TimedActions
from core.audit import Actor
from deliveries.models import Delivery, DeliveryStatus, Escalation, EscalationStatus, Merchant, Offer, OfferStatus
from deliveries.serializers import DeclineInput, DeliveryCreateInput
from deliveries.services import availability, balancing, dispatch, escalations, offers, progress, reassignment
from deliveries.services.creation import create_delivery
from drivers import locations
from drivers.models import Driver, DriverState
from zones.models import Zone

MERCHANT, OPS, DRIVER_PREFIX, PASSWORD = "history-merchant", "history-ops", "history-driver-", "history-pass"
OPEN_AT, CLOSE_AT = time(8), time(21)
SNAPSHOT_EVERY_MIN = 5
DECLINE_REASONS = [choice for choice, _ in DeclineInput().fields["reason"].choices.items()]


class HistoryDay(TimedActions):
    """One simulated day: a queue of timed events, each running one action at its moment."""

    def __init__(self, day: date, *, merchant: Merchant, ops_user, drivers: list[Driver], per_day: int, rng):
        super().__init__()
        self.day, self.merchant, self.ops, self.drivers, self.rng = day, merchant, ops_user, drivers, rng
        self.per_day = per_day
        self.positions: dict = {}
        self.homes: dict = {}
        self.answered: set = set()
        self.acknowledging: set = set()
        self.deliveries = 0
        self.ends = datetime.combine(day, CLOSE_AT, tzinfo=UTC) + timedelta(hours=2)  # closing time, and the day's end

    def later(self, action: Callable) -> None:
        """Try `action` again in 10 minutes, while the day lasts: a break for a driver who is never available, or
        going home for one who stays busy, would otherwise be tried forever and the day would never end."""
        when = _now() + timedelta(minutes=10)
        if when <= self.ends:
            self.at(when, action)

    def run(self) -> int:
        opens = datetime.combine(self.day, OPEN_AT, tzinfo=UTC)
        closes = datetime.combine(self.day, CLOSE_AT, tzinfo=UTC)
        for driver in self.drivers:
            self.positions[driver.pk] = self.homes[driver.pk] = random_point(driver.home_zone, self.rng)
            self.at(opens + timedelta(minutes=self.rng.uniform(0, 45)), lambda d=driver: self.online(d))
            lunch = opens + timedelta(hours=self.rng.uniform(4, 6))
            self.at(lunch, lambda d=driver: self.take_break(d))
            self.at(closes + timedelta(minutes=30), lambda d=driver: self.offline(d))
        # Zone balancing measures every zone (the beat does it every minute; every 5 minutes is enough here).
        for minute in range(0, int((closes - opens).total_seconds() // 60) + 60, SNAPSHOT_EVERY_MIN):
            self.at(opens + timedelta(minutes=minute), lambda: balancing.take_zone_snapshots())
        # Busier at lunch and dinner, and on Fridays and Saturdays.
        count = round(self.per_day * (1.3 if self.day.weekday() in (4, 5) else 1.0))
        for n in range(count):
            hour = self.rng.choice([9, 10, 11, 12, 12, 13, 13, 14, 15, 16, 17, 18, 18, 19, 19])
            when = datetime.combine(self.day, time(hour), tzinfo=UTC) + timedelta(minutes=self.rng.uniform(0, 59))
            self.at(when, lambda n=n: self.create(n))
        self.play(opens, until=self.ends, after_each=self.follow_up, finish=self.close_the_day)
        return self.deliveries

    # --- actions --------------------------------------------------------------------------------------------
    def ping_all(self) -> None:
        for driver in Driver.objects.filter(pk__in=[d.pk for d in self.drivers]).exclude(state=DriverState.OFFLINE):
            lat, lng = self.positions[driver.pk]
            locations.record_positions(driver.pk, [locations.Point(lat, lng, _now())], online=True)

    def online(self, driver: Driver) -> None:
        availability.go_online(driver.pk, actor=Actor.driver(driver))
        self.ping_all()
        self.redispatch()

    def take_break(self, driver: Driver) -> None:
        if Driver.objects.get(pk=driver.pk).state != DriverState.AVAILABLE:
            self.later(lambda: self.take_break(driver))
            return
        availability.start_break(driver.pk, actor=Actor.driver(driver))
        back = _now() + timedelta(minutes=self.rng.choice([15, 20, 25, 30, 40]))
        self.at(back, lambda: self.end_break(driver))

    def end_break(self, driver: Driver) -> None:
        availability.end_break(driver.pk, actor=Actor.driver(driver))
        self.ping_all()
        self.redispatch()

    def offline(self, driver: Driver) -> None:
        state = Driver.objects.get(pk=driver.pk).state
        if state == DriverState.BUSY:
            self.later(lambda: self.offline(driver))
        elif state != DriverState.OFFLINE:
            availability.take_offline(driver.pk, actor=Actor.driver(driver), reason="driver")

    def create(self, n: int) -> None:
        zone = self.rng.choice([driver.home_zone for driver in self.drivers])
        pickup = random_point(zone, self.rng)
        dropoff = (pickup[0] + self.rng.uniform(-0.015, 0.015), pickup[1] + self.rng.uniform(-0.02, 0.02))
        ready = _now() + timedelta(minutes=self.rng.choice([0, 0, 10, 15])) if self.rng.random() < 0.4 else None
        data = DeliveryCreateInput(
            data={
                "external_id": f"h-{self.day:%Y%m%d}-{n}",
                "pickup": {"name": "Kitchen", "address": "Rua da Cozinha 1", "lat": pickup[0], "lng": pickup[1]},
                "dropoff": {"name": "Customer", "address": "Rua do Cliente 2", "lat": dropoff[0], "lng": dropoff[1]},
                **({"ready_at": ready.isoformat()} if ready else {}),
            }
        )
        data.is_valid(raise_exception=True)
        self.ping_all()
        create_delivery(merchant=self.merchant, data=data.validated_data)
        self.deliveries += 1

    def answer(self, offer: Offer) -> None:
        driver, roll = offer.driver, self.rng.random()
        if roll < 0.8:
            self.at(offer.sent_at + timedelta(seconds=self.rng.uniform(4, 25)), lambda: self.accept(offer))
        elif roll < 0.92:
            reason = self.rng.choice(DECLINE_REASONS)
            self.at(
                offer.sent_at + timedelta(seconds=self.rng.uniform(3, 20)),
                lambda: offers.decline_offer(offer.pk, actor=Actor.driver(driver), reason=reason),
            )
        else:  # ignored: it expires at its deadline
            self.at(offer.expires_at + timedelta(seconds=1), lambda: offers.expire_offer(offer.pk))

    def accept(self, offer: Offer) -> None:
        driver = offer.driver
        delivery = offers.accept_offer(offer.pk, actor=Actor.driver(driver))
        roll, now = self.rng.random(), _now()
        if roll < 0.03:
            self.at(now + timedelta(minutes=self.rng.uniform(1, 4)), lambda: self.release(delivery, driver))
            return
        if roll < 0.06:
            self.at(now + timedelta(minutes=self.rng.uniform(1, 3)), lambda: self.cancel(delivery))
            return
        pickup = max(now + timedelta(seconds=offer.eta_to_pickup_s), delivery.ready_at or now)
        pickup += timedelta(minutes=self.rng.uniform(1, 4))
        self.at(pickup, lambda: progress.pick_up_delivery(delivery.pk, actor=Actor.driver(driver)))
        done = pickup + timedelta(minutes=self.rng.uniform(6, 22))
        self.at(done, lambda: self.finish(delivery, driver, failed=self.rng.random() < 0.02))

    def release(self, delivery: Delivery, driver: Driver) -> None:
        reassignment.release_delivery(delivery.pk, actor=Actor.driver(driver), reason="vehicle trouble")
        self.redispatch()

    def cancel(self, delivery: Delivery) -> None:
        progress.cancel_delivery(delivery.pk, actor=Actor.merchant(self.merchant), reason="customer cancelled")

    def finish(self, delivery: Delivery, driver: Driver, *, failed: bool) -> None:
        actor = Actor.driver(driver)
        if failed:
            progress.fail_delivery(delivery.pk, actor=actor, reason="customer not at home")
        else:
            progress.deliver_delivery(delivery.pk, actor=actor, proof={"photo": "door.jpg"})
        self.positions[driver.pk] = (delivery.dropoff_lat, delivery.dropoff_lng)
        self.ping_all()
        self.redispatch()
        self.at(_now() + timedelta(minutes=self.rng.uniform(5, 15)), lambda: self.ride_back(driver))

    def ride_back(self, driver: Driver) -> None:
        """With no job in the bag, back to where the day started: left at a dropoff outside every zone, the driver
        was in no zone's search for the rest of the day (the replay's drivers ride back too, so a replayed day of
        this history is compared with a day its drivers could have worked)."""
        if Delivery.objects.carried_by(driver).exists():
            return
        self.positions[driver.pk] = self.homes[driver.pk]
        self.ping_all()
        self.redispatch()

    def redispatch(self) -> None:
        """What the dispatch sweep does, for this history's deliveries only (nobody else's are touched)."""
        waiting = Delivery.objects.filter(merchant=self.merchant, status=DeliveryStatus.PENDING)
        for delivery_id in waiting.exclude(dispatch_not_before__gt=_now()).values_list("pk", flat=True):
            dispatch.dispatch(delivery_id)

    def acknowledge(self, escalation_id) -> None:
        escalations.acknowledge_escalation(escalation_id, actor=Actor.ops(self.ops))

    def follow_up(self) -> None:
        """Whatever the last action led to: new offers get an answer, new escalations an ops user."""
        for offer in (
            Offer.objects.filter(status=OfferStatus.PENDING, driver__in=self.drivers)
            .exclude(pk__in=self.answered)
            .select_related("driver")
        ):
            self.answered.add(offer.pk)
            self.answer(offer)
        fresh = Escalation.objects.filter(status=EscalationStatus.OPEN, delivery__merchant=self.merchant)
        fresh = fresh.exclude(pk__in=self.acknowledging)
        for escalation_id in fresh.values_list("pk", flat=True):
            self.acknowledging.add(escalation_id)
            self.at(_now() + timedelta(minutes=self.rng.uniform(1, 6)), lambda e=escalation_id: self.acknowledge(e))

    def close_the_day(self) -> None:
        """Deliveries nobody took by closing time are cancelled by the merchant; every driver goes home."""
        for delivery_id in Delivery.objects.filter(merchant=self.merchant).open().values_list("pk", flat=True):
            progress.cancel_delivery(delivery_id, actor=Actor.merchant(self.merchant), reason="closing time")
        for driver in Driver.objects.filter(pk__in=[d.pk for d in self.drivers]).exclude(state=DriverState.OFFLINE):
            if Delivery.objects.carried_by(driver).exists():
                continue
            availability.take_offline(driver.pk, actor=Actor.driver(driver), reason="driver")


def _now() -> datetime:
    return timezone.now()


def random_point(zone: Zone, rng) -> tuple[float, float]:
    for _ in range(200):
        lat, lng = rng.uniform(zone.min_lat, zone.max_lat), rng.uniform(zone.min_lng, zone.max_lng)
        if zone.contains(lat, lng):
            return lat, lng
    raise ValueError(f"no point found inside {zone.code}")


def history_accounts(zones: list[Zone], drivers_per_zone: int) -> tuple[Merchant, object, list[Driver]]:
    """The merchant, ops user and drivers of the history (created once; running again reuses them)."""
    quiet = _Quiet()
    call_command("create_merchant", MERCHANT, password=PASSWORD, name="History Kitchen", stdout=quiet)
    call_command("create_ops", OPS, password=PASSWORD, stdout=quiet)
    vehicles = ["bicycle", "scooter", "car"]
    for index in range(drivers_per_zone * len(zones)):
        call_command(
            "create_driver",
            f"{DRIVER_PREFIX}{index + 1:02d}",
            password=PASSWORD,
            zone=zones[index % len(zones)].code,
            vehicle=vehicles[index % len(vehicles)],
            name=f"History Driver {index + 1:02d}",
            stdout=quiet,
        )
    merchant = Merchant.objects.get(user__username=MERCHANT)
    drivers = list(Driver.objects.filter(user__username__startswith=DRIVER_PREFIX).select_related("home_zone"))
    return merchant, get_user_model().objects.get(username=OPS), drivers


class _Quiet:
    def write(self, *args, **kwargs) -> None:
        pass

    def flush(self) -> None:
        pass


class FleetOnline(Exception):
    """Drivers outside the history are online: on a moved clock their live positions would look fresh, and the
    history's deliveries would be offered to them."""


def seed_history(*, days: int, per_day: int, drivers_per_zone: int, seed: int, on_day: Callable) -> int:
    """Simulate the `days` days before today, each rolled up when done; `on_day(done, total, deliveries)`
    reports progress. Returns the deliveries created. Only the history's own accounts act."""
    online = Driver.objects.exclude(state=DriverState.OFFLINE).exclude(user__username__startswith=DRIVER_PREFIX)
    if online.exists():
        raise FleetOnline(f"{online.count()} drivers are online")
    zones = list(Zone.objects.filter(active=True))
    merchant, ops_user, drivers = history_accounts(zones, drivers_per_zone)
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    total = 0
    for done, day in enumerate((today - timedelta(days=back) for back in range(days, 0, -1)), start=1):
        total += HistoryDay(day, merchant=merchant, ops_user=ops_user, drivers=drivers, per_day=per_day, rng=rng).run()
        for zone in zones:
            roll_up_day(zone, day)
        on_day(done, days, total)
    return total
