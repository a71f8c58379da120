"""Shared pieces of the websocket consumers: token auth from the query string."""

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.conf import settings
from rest_framework.authtoken.models import Token


def token_from_scope(scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("token")
    return values[0] if values else None


@database_sync_to_async
def user_for_token(key: str | None):
    if not key:
        return None
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


# Close codes: the handshake is refused before accept, so nothing leaks; these show in the client's close event.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403


class BrowserOriginValidator(OriginValidator):
    """Browsers always send Origin on a websocket and must match ALLOWED_HOSTS (a cross-site page must not
    ride an ops session). Apps and servers send none and authenticate by token, so they pass."""

    def __init__(self, application):
        self.application = application

    @property
    def allowed_origins(self) -> list[str]:
        return settings.ALLOWED_HOSTS

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)
