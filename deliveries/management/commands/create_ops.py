from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

OPS_APPS = ["core", "zones", "drivers", "deliveries", "analytics", "django_celery_beat"]


class Command(BaseCommand):
    help = "Create (or update) an ops user: staff in the 'ops' group, with the admin console and the ops API."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--superuser", action="store_true", help="also grant every admin permission")

    def handle(self, *args, username, password, superuser, **options):
        with transaction.atomic():
            group, _ = Group.objects.get_or_create(name="ops")
            group.permissions.set(Permission.objects.filter(content_type__app_label__in=OPS_APPS))
            user, created = get_user_model().objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = True
            user.is_superuser = user.is_superuser or superuser
            user.save()
            user.groups.add(group)
        self.stdout.write(f"{'created' if created else 'updated'} ops user {username}")
