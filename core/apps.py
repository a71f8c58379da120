from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform"

    def ready(self):
        from core import checks, lookups, task_metrics  # noqa: F401  (system checks; the `any` lookup; Celery task metrics)
        from core.health import collect_redis_up
        from core.metrics import register_scrape_collector

        register_scrape_collector(collect_redis_up)

        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from core.tokens import revoke_on_password_change

        post_save.connect(revoke_on_password_change, sender=get_user_model(), dispatch_uid="core.password_changed")


class RelayAdminConfig(admin_apps.AdminConfig):
    """The admin is Relay's ops console: its own site (branding, login limits) replaces Django's default."""

    default = False  # named in INSTALLED_APPS; "core" itself is CoreConfig
    default_site = "core.admin_site.RelayAdminSite"
