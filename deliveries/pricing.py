from decimal import ROUND_HALF_UP, Decimal

from zones.models import Zone

CENT = Decimal("0.01")


def money(amount) -> Decimal:
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def delivery_fee(zone: Zone, distance_km: float) -> Decimal:
    """What the merchant pays: the zone's base fee plus a per-km rate on the straight-line distance."""
    return money(zone.fee_base + zone.fee_per_km * Decimal(str(round(distance_km, 3))))


def driver_pay(zone: Zone, *, distance_km: float, minutes: float, surge: Decimal = Decimal("1.00")) -> Decimal:
    """What a driver earns for a job: base + per km + per minute, times the zone's surge multiplier."""
    base = zone.pay_base + zone.pay_per_km * Decimal(str(round(distance_km, 3)))
    base += zone.pay_per_minute * Decimal(str(round(minutes, 2)))
    return money(base * surge)
