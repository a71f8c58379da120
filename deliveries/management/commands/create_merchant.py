from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.permissions import role_conflict
from deliveries.models import Merchant


class Command(BaseCommand):
    help = "Create (or update) a merchant account. Prints its webhook signing secret."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--name", help="merchant name shown to customers (default: the username)")
        parser.add_argument("--webhook-url", default="")

    def handle(self, *args, username, password, name, webhook_url, **options):
        try:
            Merchant._meta.get_field("webhook_url").clean(webhook_url, None)
        except ValidationError as exc:
            raise CommandError(f"--webhook-url {webhook_url}: {exc.messages[0]} (http or https)") from exc
        with transaction.atomic():
            user, _ = get_user_model().objects.get_or_create(username=username)
            if conflict := role_conflict(user, "merchant"):
                raise CommandError(conflict)
            user.set_password(password)
            user.save()
            merchant, created = Merchant.objects.update_or_create(
                user=user, defaults={"name": name or username, "webhook_url": webhook_url}
            )
        self.stdout.write(
            f"{'created' if created else 'updated'} merchant {username}; webhook secret {merchant.webhook_secret}"
        )
