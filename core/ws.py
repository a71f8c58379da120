"""Shared pieces of the websocket consumers: token auth from the query string, a JSON socket that survives
bad messages, and the refusal of paths no consumer serves."""

import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from rest_framework.authtoken.models import Token

log = logging.getLogger(__name__)


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
CLOSE_NOT_FOUND = 4404


class JsonSocket(AsyncJsonWebsocketConsumer):
    """A socket whose client sends JSON objects. A message that is not one (binary, not JSON, not an object),
    or whose handling fails, is answered with an `error` message; the socket stays open."""

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = await self.decode_json(text_data) if text_data is not None else None
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send_error("invalid_message", 'Messages are JSON objects: {"type": ..., "data": {...}}.')
            return
        try:
            await self.receive_json(content, **kwargs)
        except StopConsumer:
            raise
        except Exception:
            log.exception("%s: handling a client message failed", type(self).__name__)
            await self.send_error("server_error", "Something went wrong on our side; it has been logged.")

    async def send_error(self, code: str, detail: str, fields=None):
        body = {"code": code, "detail": detail}
        if fields:
            body["fields"] = {name: [str(error) for error in errors] for name, errors in fields.items()}
        await self.send_json({"type": "error", "data": body})


class UnknownPath(AsyncWebsocketConsumer):
    """Every websocket path no consumer serves: refused at the handshake (not a server error)."""

    async def connect(self):
        await self.close(code=CLOSE_NOT_FOUND)


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
