from django.core.management.base import BaseCommand, CommandError

from analytics.history import FleetOnline, seed_history
from analytics.models import ZoneDay
from zones.models import Zone

BAR = 30


class Command(BaseCommand):
    help = (
        "Create a realistic history of the last N days (deliveries, offers, breaks, escalations) through Relay's "
        "own actions with a moved clock, and roll each day up, so the KPI dashboard has something to show."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=14)
        parser.add_argument("--per-day", type=int, default=40, help="deliveries on an ordinary day")
        parser.add_argument("--drivers-per-zone", type=int, default=3)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--if-empty", action="store_true", help="do nothing if any day is already rolled up")

    def handle(self, *args, days, per_day, drivers_per_zone, seed, if_empty, **options):
        if days < 1 or per_day < 0 or drivers_per_zone < 1:
            raise CommandError("--days and --drivers-per-zone must be at least 1, --per-day at least 0")
        if not Zone.objects.filter(active=True).exists():
            raise CommandError(
                "no zones: load some first (`manage.py load_zones FILE` or `manage.py demo --setup-only`)"
            )
        if if_empty and ZoneDay.objects.exists():
            self.stdout.write("history already there: nothing to do")
            return
        try:
            total = seed_history(
                days=days, per_day=per_day, drivers_per_zone=drivers_per_zone, seed=seed, on_day=self.progress
            )
        except FleetOnline as exc:
            raise CommandError(f"{exc}: seed the history before the fleet starts (as `make demo` does)") from exc
        self.stdout.write(f"\n{total} deliveries over {days} days, rolled up: see the KPI dashboard in the console")

    def progress(self, done: int, total: int, deliveries: int) -> None:
        filled = round(BAR * done / total)
        self.stdout.write(
            f"\r[{'#' * filled}{'.' * (BAR - filled)}] day {done}/{total}, {deliveries} deliveries", ending=""
        )
        self.stdout.flush()
