from django.apps import AppConfig


class DriversConfig(AppConfig):
    name = "drivers"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save
        from rest_framework.authtoken.models import Token

        from drivers import credentials

        # Revocation reaches the ingest route's token cache whoever deletes the token (logout, the admin) or
        # deactivates the user.
        post_delete.connect(credentials.on_token_deleted, sender=Token, dispatch_uid="drivers.token_deleted")
        post_save.connect(credentials.on_user_saved, sender=get_user_model(), dispatch_uid="drivers.user_saved")
