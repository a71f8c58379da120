from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from zones.models import Zone

CENT = Decimal("0.01")
NO_SURGE = Decimal("1.00")


def money(amount) -> Decimal:
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def _exact(number: float, places: int) -> Decimal:
    return Decimal(str(round(number, places)))


def delivery_fee(zone: Zone, distance_km: float) -> Decimal:
    """What the merchant pays: the zone's base fee plus a per-km rate on the straight-line distance."""
    return money(zone.fee_base + zone.fee_per_km * _exact(distance_km, 3))


@dataclass(frozen=True)
class DriverPay:
    """A driver's pay for one job, part by part (SPEC 5): base + per km + per minute, the surge on those three,
    and waiting pay (not surged: it pays for the merchant's delay, not for demand)."""

    base: Decimal
    distance: Decimal
    time: Decimal
    surge: Decimal
    waiting: Decimal

    @property
    def total(self) -> Decimal:
        return self.base + self.distance + self.time + self.surge + self.waiting


def driver_pay_parts(
    zone: Zone, *, distance_km: float, minutes: float, surge: Decimal = NO_SURGE, waiting_minutes: float = 0
) -> DriverPay:
    base, distance = money(zone.pay_base), money(zone.pay_per_km * _exact(distance_km, 3))
    time = money(zone.pay_per_minute * _exact(minutes, 2))
    return DriverPay(
        base=base,
        distance=distance,
        time=time,
        surge=money((base + distance + time) * (surge - 1)),
        waiting=money(zone.pay_waiting_per_minute * _exact(waiting_minutes, 2)),
    )


def driver_pay(zone: Zone, *, distance_km: float, minutes: float, surge: Decimal = NO_SURGE) -> Decimal:
    """What a driver earns for a job, before any waiting: base + per km + per minute, times the surge."""
    return driver_pay_parts(zone, distance_km=distance_km, minutes=minutes, surge=surge).total


def idle_pay(zone: Zone, *, seconds: float) -> Decimal:
    """Paid idle time (available, no job) at the zone's waiting rate: part of the cost of a delivery (SPEC 5)."""
    return money(zone.pay_waiting_per_minute * _exact(seconds / 60, 2))
