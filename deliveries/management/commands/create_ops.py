from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.permissions import ops_group, role_conflict


class Command(BaseCommand):
    help = "Create (or update) an ops user: staff in the 'ops' group, with the admin console and the ops API."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--superuser", action="store_true", help="also grant every admin permission")

    def handle(self, *args, username, password, superuser, **options):
        with transaction.atomic():
            group = ops_group()
            user, created = get_user_model().objects.get_or_create(username=username)
            if conflict := role_conflict(user, "ops"):
                raise CommandError(conflict)
            user.set_password(password)
            user.is_staff = True
            user.is_superuser = user.is_superuser or superuser
            user.save()
            user.groups.add(group)
        self.stdout.write(f"{'created' if created else 'updated'} ops user {username}")
