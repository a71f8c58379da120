from datetime import date

from django.core.management.base import BaseCommand, CommandError

from analytics.kpis import days_between
from analytics.rollup import roll_up_day
from zones.models import Zone


class Command(BaseCommand):
    help = (
        "Roll up the KPIs of a range of local days now (the nightly task does the last two): a backfill after "
        "installing, or a day corrected later. Running it again writes the same rows."
    )

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
        parser.add_argument("--to", dest="last", type=date.fromisoformat, required=True, help="YYYY-MM-DD")
        parser.add_argument("--zone", help="a zone's code; every zone when absent")

    def handle(self, *args, first, last, zone, **options):
        if last < first:
            raise CommandError("--to must be on or after --from")
        zones = Zone.objects.filter(code=zone) if zone else Zone.objects.all()
        if zone and not zones.exists():
            raise CommandError(f"no zone {zone!r}")
        days = days_between(first, last)
        for one in zones:
            for day in days:
                roll_up_day(one, day)
        self.stdout.write(f"rolled up {len(days)} days of {len(zones)} zones")
