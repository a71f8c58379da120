"""Shared pieces of the websocket consumers: token auth from the query string, a JSON socket that survives
bad messages, sockets that close when the credentials they were opened with stop being valid, and the refusal
of paths no consumer serves."""

import json
import logging
from urllib.parse import parse_qs

import orjson
from asgiref.sync import async_to_sync
from channels.auth import get_user
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.security.websocket import OriginValidator
from django.conf import settings

from core import metrics
from core.tokens import valid_token

log = logging.getLogger(__name__)
SOCKETS = metrics.live_gauge("relay_websocket_connections", "Open websockets, by kind (driver, ops, track)", ["kind"])


def token_from_scope(scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode()).get("token")
    return values[0] if values else None


@database_sync_to_async
def user_for_token(key: str | None):
    token = valid_token(key)
    return token.user if token else None


# Close codes: the handshake is refused before accept, so nothing leaks; these show in the client's close event.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class JsonSocket(AsyncJsonWebsocketConsumer):
    """A socket whose client sends JSON objects. A message that is not one (binary, not JSON, not an object),
    or whose handling fails, is answered with an `error` message; the socket stays open. Open sockets are
    counted by `kind` (relay_websocket_connections)."""

    kind = "socket"  # "driver", "ops", "track"
    counted = False

    async def dispatch(self, message):
        # Channels' own dispatch first hops to a thread to close stale database connections, on every message
        # (each location of every driver, each push): a thread round trip per message, serialized on the one
        # thread that runs all of the process's thread-sensitive calls. The consumers here touch the database
        # only through database_sync_to_async, which does that itself around each call.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol, headers)
        self.counted = True
        SOCKETS.labels(kind=self.kind).inc()

    async def disconnect(self, code):
        if self.counted:
            self.counted = False
            SOCKETS.labels(kind=self.kind).dec()

    @classmethod
    async def decode_json(cls, text_data):
        # orjson for the common case; the standard module decides what orjson refuses and it accepts (NaN,
        # integers past 64 bits), so such a message is answered as before.
        try:
            return orjson.loads(text_data)
        except orjson.JSONDecodeError:
            return json.loads(text_data)

    @classmethod
    async def encode_json(cls, content):
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS).decode()

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


# Every open authenticated socket is in this group; `recheck_socket_credentials` (a beat task, every 30 s) asks
# them all to check their credentials again.
CREDENTIAL_CHECK_GROUP = "sockets.credentials"


def recheck_socket_credentials() -> None:
    async_to_sync(get_channel_layer().group_send)(CREDENTIAL_CHECK_GROUP, {"type": "credentials.recheck"})


class AuthenticatedConsumer(JsonSocket):
    """A socket that stays open only while the credentials it was opened with are valid: a token that was
    revoked (logout) or expired, a session that ended, a deactivated user, or a user who lost the right to this
    stream closes it at the next recheck. Subclasses say who may hold the socket in `authorized_user`."""

    token_key: str | None = None
    checking = False

    async def authorized_user(self, user):
        """The user if they may hold this socket now, else None."""
        return user

    async def current_user(self):
        """The user behind the socket's credentials now, or None: its token if it came with one (apps), else
        its browser session."""
        if self.token_key:
            user = await user_for_token(self.token_key)
        elif "session" in self.scope:
            user = await get_user(self.scope)
            user = user if user.is_authenticated and user.is_active else None
        else:
            user = None
        return await self.authorized_user(user) if user is not None else None

    async def authenticate(self):
        """At connect: the authorized user, or None to refuse the socket."""
        self.token_key = token_from_scope(self.scope)
        return await self.current_user()

    async def accept(self, subprotocol=None, headers=None):
        await self.channel_layer.group_add(CREDENTIAL_CHECK_GROUP, self.channel_name)
        self.checking = True
        await super().accept(subprotocol, headers)

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.checking:
            await self.channel_layer.group_discard(CREDENTIAL_CHECK_GROUP, self.channel_name)

    async def credentials_recheck(self, event):
        if await self.current_user() is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        # Channel layers forget a group member after a day (group_expiry): joining again keeps a socket that
        # stays open longer within reach of the next check.
        await self.channel_layer.group_add(CREDENTIAL_CHECK_GROUP, self.channel_name)


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
