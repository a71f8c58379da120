"""Reads about drivers, one function per question."""

from drivers.models import Driver, Shift


def current_shift(driver: Driver) -> Shift | None:
    return Shift.objects.open().filter(driver=driver).first()
