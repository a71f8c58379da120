from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.permissions import role_conflict
from drivers.models import Driver, Vehicle
from zones.models import Zone


class Command(BaseCommand):
    help = "Create (or update) a driver account with its profile."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--zone", required=True, help="home zone code")
        parser.add_argument("--vehicle", choices=Vehicle.values, default=Vehicle.BICYCLE)
        parser.add_argument("--name", help="display name (default: the username)")
        parser.add_argument("--phone", default="")
        parser.add_argument("--capacity", type=int, default=1)

    def handle(self, *args, username, password, zone, vehicle, name, phone, capacity, **options):
        home = Zone.objects.filter(code=zone).first()
        if home is None:
            raise CommandError(f"no zone {zone!r}; load zones first (manage.py load_zones FILE)")
        if capacity < 1:
            raise CommandError("--capacity must be at least 1")
        with transaction.atomic():
            user, _ = get_user_model().objects.get_or_create(username=username)
            if conflict := role_conflict(user, "driver"):
                raise CommandError(conflict)
            user.set_password(password)
            user.save()
            driver, created = Driver.objects.update_or_create(
                user=user,
                defaults={
                    "name": name or username,
                    "phone": phone,
                    "vehicle": vehicle,
                    "home_zone": home,
                    "capacity": capacity,
                },
            )
        self.stdout.write(f"{'created' if created else 'updated'} driver {username} ({driver.pk})")
