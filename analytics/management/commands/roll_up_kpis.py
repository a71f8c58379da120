from datetime import date

from django.core.management.base import BaseCommand, CommandError

from analytics.facts import local_today
from analytics.kpis import days_between
from analytics.rollup import roll_up_day
from zones.models import Zone


class Command(BaseCommand):
    help = (
        "Roll up the KPIs of a range of local days now (the nightly task does the last two): a backfill after "
        "installing, or a day corrected later. Running it again writes the same rows. A day not over yet in a "
        "zone's time zone is left out: its row would stand for the whole day, and the KPIs compute it live."
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
        written = not_over = 0
        for one in zones:
            today = local_today(one)
            for day in days_between(first, last):
                if day >= today:
                    not_over += 1
                    continue
                roll_up_day(one, day)
                written += 1
        self.stdout.write(f"rolled up {written} zone-days")
        if not_over:
            self.stdout.write(f"left out {not_over} zone-days not over yet in their zone's time zone")
