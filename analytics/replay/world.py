"""A recorded day (`recording.record_day`) played in the scratch database `manage.py replay` made for it: its
zones under the policy asked for, its deliveries sent in at their recorded moments, its drivers going online, on
breaks and home when they did and answering offers as they used to, all through Relay's own actions on a moved
clock; then the day's KPIs, as the dashboard computes them."""

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.core import serializers
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from analytics.facts import zone_day_facts
from analytics.history import random_point
from analytics.kpis import merge, summarise_deliveries
from analytics.simclock import TimedActions
from core.audit import Actor
from core.errors import DomainError
from deliveries import eta
from deliveries.models import Delivery, EscalationLevel, Merchant, Offer, OfferStatus
from deliveries.serializers import DeliveryCreateInput
from deliveries.services import availability, balancing, ladder, offers, progress
from deliveries.services.creation import create_delivery
from drivers import locations
from drivers.models import Driver, DriverState
from zones.geometry import haversine_km
from zones.models import Zone

SWEEP_EVERY = timedelta(seconds=30)  # beat runs dispatch and the ladder every 30 s; snapshots every minute
SWEEP_WHEN_NOBODY_IS_ONLINE = timedelta(minutes=1)
SNAPSHOT_EVERY = timedelta(minutes=1)
RETRY_IN = timedelta(minutes=5)
# A driver the system set offline (missed offers) while their recorded day has them working goes back online after
# this: the app has told them why, and a driver still on shift reconnects. Left offline, every policy that makes
# offers expire more often would look as if it sent whole fleets home for the day.
COMES_BACK_AFTER = timedelta(minutes=5)  # a break or going home refused (carrying an order) is tried again
LAST_ORDER_GRACE = timedelta(hours=3)  # how long after the last delivery came in the day may run on
# How a driver with no offers that day answers, where the fleet had none either.
DEFAULT_ANSWERS = {"accepted": 8, "declined": 1, "expired": 1, "response_s": [12.0], "decline_reasons": ["too_far"]}


@dataclass
class _Leg:
    """A driver riding from one point to another, to place them where they would be at each ping."""

    start: tuple[float, float]
    end: tuple[float, float]
    leaves: datetime
    arrives: datetime

    def where(self, now: datetime) -> tuple[float, float]:
        if now >= self.arrives:
            return self.end
        share = max(0.0, (now - self.leaves) / (self.arrives - self.leaves))
        return tuple(a + (b - a) * share for a, b in zip(self.start, self.end, strict=True))


class ReplayDay(TimedActions):
    def __init__(self, recording: dict, *, changes: dict[str, dict], seed: int):
        super().__init__()
        self.recording, self.changes, self.rng = recording, changes, random.Random(seed)
        self.start = datetime.fromisoformat(recording["start"])
        self.legs: dict = {}
        self.homes: dict = {}  # where each driver starts the day, and rides back to when they have no job
        self.schedules: dict = {}  # each driver's recorded moves, (when, move), in order
        self.returning: set = set()
        self.free_at: dict = {}
        self.habits: dict = {}
        self.answered: set = set()
        self.sweeping = False
        self.refused = 0
        self.measured = datetime.min.replace(tzinfo=self.start.tzinfo)
        self.fleet = _fleet_habits(recording["drivers"])

    def run(self) -> dict:
        zones = self._load_zones()
        merchant = self._merchant()
        self.last_order = datetime.fromisoformat(self.recording["deliveries"][-1]["at"])
        for index, shape in enumerate(self.recording["drivers"], start=1):
            self._driver(index, shape, zones)
        for index, row in enumerate(self.recording["deliveries"], start=1):
            self.at(datetime.fromisoformat(row["at"]), lambda i=index, r=row: self.create(merchant, i, r))
        until = max(datetime.fromisoformat(self.recording["end"]), self.last_order + LAST_ORDER_GRACE)
        self.play(self.start, until=until, after_each=self.follow_up, finish=lambda: None)
        day = datetime.fromisoformat(self.recording["day"]).date()
        replayed = [zone for zone in zones.values() if zone.code in self.recording["zones"]]
        figures = summarise_deliveries(merge(zone_day_facts(zone, day) for zone in replayed))
        return figures | {"still_open": Delivery.objects.open().count(), "refused": self.refused}

    # --- the world as recorded ----------------------------------------------------------------------------
    def _load_zones(self) -> dict[str, Zone]:
        rows = list(serializers.deserialize("json", self.recording["zone_rows"]))
        for row in rows:
            row.save(save_m2m=False)  # every zone first: neighbours name each other
        for row in rows:
            row.save()
        zones = {zone.code: zone for zone in Zone.objects.all()}
        for code, fields in self.changes.items():
            for zone in zones.values() if code == "*" else [zones[code]]:
                for name, value in fields.items():
                    setattr(zone, name, value)
                zone.full_clean()  # the console's own checks: thresholds in order, numbers in range
                zone.save()
        for row in serializers.deserialize("json", self.recording["speed_rows"]):
            row.save()
        return zones

    def _merchant(self) -> Merchant:
        user = get_user_model().objects.create_user("replay-merchant")
        return Merchant.objects.create(user=user, name="Replay")

    def _driver(self, index: int, shape: dict, zones: dict[str, Zone]) -> None:
        user = get_user_model().objects.create_user(f"replay-driver-{index:03d}")
        driver = Driver.objects.create(
            # Ids the same in every run (not uuid4's): rows read in id order come in the same order each time.
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"relay-replay-driver-{index}"),
            user=user,
            name=f"Replay driver {index:03d}",
            vehicle=shape["vehicle"],
            capacity=shape["capacity"],
            home_zone=zones[shape["zone"]],
        )
        answered = shape["accepted"] + shape["declined"] + shape["expired"]
        self.habits[driver.pk] = shape if answered else self.fleet
        here = tuple(shape["position"]) if shape["position"] else random_point(zones[shape["zone"]], self.rng)
        self.legs[driver.pk] = _Leg(here, here, self.start, self.start)
        self.homes[driver.pk] = here
        self.schedules[driver.pk] = [(datetime.fromisoformat(at), move) for at, move in shape["moves"]]
        moments = [datetime.fromisoformat(at) for at, _ in shape["moves"]]
        for (at, move), until in zip(shape["moves"], [*moments[1:], self.last_order + LAST_ORDER_GRACE], strict=True):
            self.at(datetime.fromisoformat(at), lambda d=driver, m=move, u=until: self.move(d, m, until=u))

    # --- actions ------------------------------------------------------------------------------------------
    def create(self, merchant: Merchant, index: int, row: dict) -> None:
        made = timezone.now()
        data = {"external_id": f"replay-{index}", "pickup": row["pickup"], "dropoff": row["dropoff"]}
        for key, field in (("ready_in_s", "ready_at"), ("promised_in_s", "promised_by")):
            if row[key] is not None:
                data[field] = (made + timedelta(seconds=row[key])).isoformat()
        if row["value"] is not None:
            data["value"] = row["value"]
        checked = DeliveryCreateInput(data=data)
        self.ping_all()
        try:
            checked.is_valid(raise_exception=True)
            delivery, _ = create_delivery(merchant=merchant, data=checked.validated_data)
        except (DomainError, ValidationError):  # its zone since made inactive, say: counted, not lost from sight
            self.refused += 1
            return
        if not self.sweeping:  # the sweeps rest while nothing is open
            self.sweeping = True
            self.at(made + SWEEP_EVERY, self.sweep)
        if row["cancelled_after_s"] is not None:
            cancel_at = made + timedelta(seconds=row["cancelled_after_s"])
            self.at(cancel_at, lambda: self.cancel(delivery, merchant))

    def cancel(self, delivery: Delivery, merchant: Merchant) -> None:
        progress.cancel_delivery(delivery.pk, actor=Actor.merchant(merchant), reason="cancelled, as recorded")

    def move(self, driver: Driver, move: str, *, until: datetime) -> None:
        """The driver's recorded `move`. A break or going home refused (the driver carries an order) is tried again,
        but only until the driver's next recorded move: a break put off past its recorded end would otherwise start
        once the order is delivered and never end, its end having been refused already (not on a break then)."""
        now = timezone.now()
        try:
            if move == "online":
                availability.go_online(driver.pk, actor=Actor.driver(driver))
            elif move == "on_break":
                availability.start_break(driver.pk, actor=Actor.driver(driver))
            elif move == "end_break":
                availability.end_break(driver.pk, actor=Actor.driver(driver))
            elif Driver.objects.get(pk=driver.pk).state != DriverState.OFFLINE:
                availability.take_offline(driver.pk, actor=Actor.driver(driver), reason="driver")
        except DomainError:
            again = now + RETRY_IN
            if move in ("on_break", "offline") and again < until:
                self.at(again, lambda: self.move(driver, move, until=until))  # busy with an order: after it
            return
        self.ping_all()
        if move in ("online", "end_break"):
            ladder.dispatch_waiting()  # as beat's next pass would: what waits is offered to the driver back

    def sweep(self) -> None:
        """What beat does: dispatch what waits, climb the ladder, and each minute measure the zones."""
        now = timezone.now()
        self.ping_all()
        self.bring_back_the_sent_home(now)
        ladder.dispatch_waiting()
        ladder.run_ladder()
        if now - self.measured >= SNAPSHOT_EVERY:
            balancing.take_zone_snapshots()
            self.measured = now
        anyone = Driver.objects.exclude(state=DriverState.OFFLINE).exists()
        if anyone or self.queue:
            self.sweeping = Delivery.objects.open().exists()
        else:  # nobody to offer anything to, ever again: only the ladder has steps left to climb
            self.sweeping = Delivery.objects.open().filter(escalation_level__lt=EscalationLevel.CRITICAL).exists()
        if self.sweeping:
            # With nobody online only the ladder's steps (minutes apart) are left to see: no need to look as often.
            self.at(now + (SWEEP_EVERY if anyone else SWEEP_WHEN_NOBODY_IS_ONLINE), self.sweep)

    def bring_back_the_sent_home(self, now: datetime) -> None:
        """Drivers offline though their recorded day has them working (set offline for missed offers) come back
        online COMES_BACK_AFTER later, unless their day has ended by then."""
        for driver_id in Driver.objects.filter(state=DriverState.OFFLINE).values_list("pk", flat=True):
            if driver_id not in self.returning and self._working(driver_id, now):
                self.returning.add(driver_id)
                self.at(now + COMES_BACK_AFTER, lambda d=driver_id: self.come_back(d))

    def come_back(self, driver_id) -> None:
        self.returning.discard(driver_id)
        driver = Driver.objects.get(pk=driver_id)
        if driver.state == DriverState.OFFLINE and self._working(driver_id, timezone.now()):
            self.move(driver, "online", until=timezone.now())

    def _working(self, driver_id, now: datetime) -> bool:
        """Whether the driver's last recorded move by `now` left them on shift (online, or on a break)."""
        done = [move for at, move in self.schedules[driver_id] if at <= now]
        return bool(done) and done[-1] != "offline"

    def ping_all(self) -> None:
        now = timezone.now()
        online = Driver.objects.exclude(state=DriverState.OFFLINE).values_list("pk", flat=True)
        for driver_id in online:
            lat, lng = self.legs[driver_id].where(now)
            locations.record_positions(driver_id, [locations.Point(lat, lng, now)], online=True)

    def follow_up(self) -> None:
        """Each new offer gets its driver's answer, in their time, and its deadline."""
        pending = Offer.objects.filter(status=OfferStatus.PENDING).select_related("driver")
        # Answered in an order that is the same in every run, so a seed draws the same answers: offers made at one
        # instant (the clock stands still between actions) would otherwise come in their random ids' order. Few are
        # pending at once: those answered already are skipped here, not sent to the database as a growing list.
        for offer in pending.order_by("sent_at", "driver_id", "delivery__external_id"):
            if offer.pk not in self.answered:
                self.answered.add(offer.pk)
                self.answer(offer)

    def answer(self, offer: Offer) -> None:
        habits, driver = self.habits[offer.driver_id], offer.driver
        self.at(offer.expires_at + timedelta(milliseconds=1), lambda: offers.expire_offer(offer.pk))
        choice = self.rng.choices(
            ["accepted", "declined", "expired"], weights=[habits[k] for k in ("accepted", "declined", "expired")]
        )[0]
        if choice == "expired":
            return
        after = timedelta(seconds=self.rng.choice(habits["response_s"] or self.fleet["response_s"]))
        if choice == "accepted":
            self.at(offer.sent_at + after, lambda: self.accept(offer))
        else:
            reason = self.rng.choice(habits["decline_reasons"] or self.fleet["decline_reasons"])
            self.at(
                offer.sent_at + after,
                lambda: offers.decline_offer(offer.pk, actor=Actor.driver(driver), reason=reason),
            )

    def accept(self, offer: Offer) -> None:
        driver = offer.driver
        delivery = offers.accept_offer(offer.pk, actor=Actor.driver(driver))
        now = timezone.now()
        leaves = max(now, self.free_at.get(driver.pk, now))
        here = self.legs[driver.pk].where(leaves)
        pickup, dropoff = (delivery.pickup_lat, delivery.pickup_lng), (delivery.dropoff_lat, delivery.dropoff_lng)
        there = leaves + _ride(here, pickup, driver.vehicle)
        picked = max(there, delivery.ready_at or there) + timedelta(seconds=eta.PICKUP_SERVICE_S)
        arrives = picked + _ride(pickup, dropoff, driver.vehicle)
        done = arrives + timedelta(seconds=eta.DROPOFF_SERVICE_S)
        self.free_at[driver.pk] = done
        self.legs[driver.pk] = _Leg(here, pickup, leaves, there)
        self.at(picked, lambda: self.pick_up(delivery, driver, pickup, dropoff, picked, arrives))
        self.at(done, lambda: self.deliver(delivery, driver, dropoff, done))

    def deliver(self, delivery, driver, dropoff, done) -> None:
        """Dropped off; with no job after it the driver rides back to where their day started. Left at the dropoff,
        often outside every zone, they would be in no zone's search for the rest of the day."""
        if self.free_at[driver.pk] == done:
            home = self.homes[driver.pk]
            self.legs[driver.pk] = _Leg(dropoff, home, done, done + _ride(dropoff, home, driver.vehicle))
        progress.deliver_delivery(delivery.pk, actor=Actor.driver(driver), proof={})

    def pick_up(self, delivery, driver, pickup, dropoff, leaves, arrives) -> None:
        self.legs[driver.pk] = _Leg(pickup, dropoff, leaves, arrives)
        progress.pick_up_delivery(delivery.pk, actor=Actor.driver(driver))


def _ride(start: tuple[float, float], end: tuple[float, float], vehicle: str) -> timedelta:
    return timedelta(seconds=eta.travel_seconds(haversine_km(*start, *end), vehicle))


def _fleet_habits(drivers: list[dict]) -> dict:
    """The whole fleet's answers: for a driver who had no offers that day."""
    fleet = {key: sum(d[key] for d in drivers) for key in ("accepted", "declined", "expired")}
    fleet["response_s"] = [s for d in drivers for s in d["response_s"]]
    fleet["decline_reasons"] = [r for d in drivers for r in d["decline_reasons"]]
    if not sum(fleet[key] for key in ("accepted", "declined", "expired")):
        return DEFAULT_ANSWERS
    return {key: value or DEFAULT_ANSWERS[key] for key, value in fleet.items()}
