"""Shared pieces of the websocket consumers: token auth from the query string, a JSON socket that survives
bad messages, sockets that close when the credentials they were opened with stop being valid, and the refusal
of paths no consumer serves."""

import asyncio
import logging
import uuid
import weakref
from importlib import import_module
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
from django.utils import timezone
from redis.exceptions import RedisError

from core import metrics, parsers
from core.channel_layer import LOST, PubSubChannelLayer
from core.inputs import NUL
from core.tokens import valid_token

log = logging.getLogger(__name__)
SOCKETS = metrics.live_gauge("relay_websocket_connections", "Open websockets, by kind (driver, ops, track)", ["kind"])


def token_from_scope(scope) -> str | None:
    # latin-1 reads any bytes: a query string that is not UTF-8 holds no valid token and is refused as unknown.
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


@database_sync_to_async
def user_for_token(key: str | None):
    token = valid_token(key)
    return token.user if token else None


# Close codes. A handshake refused before accept leaks nothing: in-process clients see the code, a real client (through
# uvicorn) a plain HTTP 403 (README, "the sockets"). After accept, the client's close event carries the code.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_THROTTLED = 4429
# The server can no longer push to the socket (its channel layer lost Redis): the app reconnects and resumes.
CLOSE_SERVICE_RESTART = 1012
UNAVAILABLE_RETRY_AFTER_S = 5


def envelope(type: str, data: dict) -> dict:
    """A server message in API.md's envelope, but its `seq`: each socket numbers what it sends."""
    return {"type": type, "id": str(uuid.uuid4()), "sent_at": timezone.now().isoformat(), "data": data}


class JsonSocket(AsyncJsonWebsocketConsumer):
    """A socket whose client sends JSON objects. A message that is not one (binary, not JSON, not an object),
    or whose handling fails, is answered with an `error` message; the socket stays open. Open sockets are
    counted by `kind` (relay_websocket_connections)."""

    kind = "socket"  # "driver", "ops", "track"
    counted = False
    seq = 0  # the number of the socket's last message (API.md's `seq`, per subscriber stream)

    closing = False  # the socket sent its close: what the channel layer brings is no longer sent
    left = False  # the server's disconnect was handled

    async def __call__(self, scope, receive, send):
        try:
            layer = get_channel_layer(self.channel_layer_alias)
            if isinstance(layer, PubSubChannelLayer):
                await self._serve(scope, receive, send, layer)
            else:
                await super().__call__(scope, receive, send)
        except RedisError as exc:  # the channel layer cannot reach Redis: the app is asked to come back later
            log.warning("%s socket: channel layer unavailable (%s)", self.kind, exc)
            if getattr(self, "channel_name", None) is None:
                self.left = True  # refused before it had a channel: there is nothing to clean up
            await self.refuse(send, 503, UNAVAILABLE_RETRY_AFTER_S, CLOSE_SERVICE_RESTART)
        finally:
            if not self.left:
                # Ended without the server's disconnect (a send to a client already gone, a cancellation at
                # shutdown): the same clean-up, or the socket's groups and count would outlive it.
                try:
                    await self.websocket_disconnect({"type": "websocket.disconnect", "code": 1006})
                except StopConsumer:
                    pass
                except Exception:
                    log.exception("%s: cleaning up after a socket that ended abruptly", type(self).__name__)

    async def _serve(self, scope, receive, send, layer: PubSubChannelLayer):
        # Channels waits for the client and the channel layer with a task for each and `asyncio.wait` over both,
        # for the socket's whole life. Here the channel's messages arrive in the socket's inbox directly, and so
        # does the one task that waits for the client's next message, when it is done: one task less, and one
        # queue (BENCHMARKS.md, issue 12 round 9). Messages are handled one at a time, as there.
        self.scope, self.channel_layer, self.base_send = scope, layer, send
        self.channel_name, inbox = await layer.new_inbox()

        def from_client() -> asyncio.Task:
            waiting = asyncio.ensure_future(receive())
            waiting.add_done_callback(inbox.put_nowait)
            return waiting

        waiting = from_client()
        try:
            while True:
                item = await inbox.get()
                if item is waiting:
                    message, waiting = item.result(), None
                else:
                    message = layer.deserialize(item)
                item = None  # nothing of a handled message is kept while the socket waits for the next
                await self.dispatch(message)
                message = None
                if waiting is None:
                    waiting = from_client()  # once the last is handled, as Channels does: the server's flow control
        except StopConsumer:
            pass
        finally:
            if waiting is not None:
                waiting.cancel()
            await layer.close_inbox(self.channel_name)

    async def refuse(self, send, status: int, retry_after_s: int, code: int) -> None:
        """Refuse the handshake with an HTTP answer the client can act on (`status` and `Retry-After`) where the
        server can send one (uvicorn's websocket.http.response extension); otherwise, or once accepted, close with
        `code`."""
        self.closing = True
        if self.counted or "websocket.http.response" not in self.scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": code})
            return
        headers = [(b"retry-after", str(retry_after_s).encode()), (b"content-length", b"0")]
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b""})

    async def channel_layer_lost(self, event):
        await self.close(code=CLOSE_SERVICE_RESTART)

    async def dispatch(self, message):
        # Channels' own dispatch first hops to a thread to close stale database connections, on every message
        # (each location of every driver, each push): a thread round trip per message, serialized on the one
        # thread that runs all of the process's thread-sensitive calls. The consumers here touch the database
        # only through database_sync_to_async, which does that itself around each call.
        if self.closing and not message["type"].startswith("websocket."):
            return  # a push behind the socket's own close: the server refuses sends after it (a stream resumes)
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def close(self, code=None, reason=None):
        self.closing = True
        await super().close(code, reason)

    async def websocket_disconnect(self, message):
        self.left = True
        await super().websocket_disconnect(message)

    async def accept(self, subprotocol=None, headers=None):
        await super().accept(subprotocol, headers)
        # The handshake's headers are read while connecting (origin, cookies) and never after. Emptied, the list the
        # server's scope shares with this one holds nothing for the socket's life (~0.9 KB a socket).
        if isinstance(handshake := self.scope.get("headers"), list):
            handshake.clear()
        self.counted = True
        SOCKETS.labels(kind=self.kind).inc()

    async def disconnect(self, code):
        if self.counted:
            self.counted = False
            SOCKETS.labels(kind=self.kind).dec()

    @classmethod
    async def decode_json(cls, text_data):
        return parsers.loads(text_data)

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
        """An `error` answering the client's message, in API.md's envelope like every server message."""
        body = {"code": code, "detail": detail}
        if fields:
            body["fields"] = {name: [str(error) for error in errors] for name, errors in fields.items()}
        await self.send_json(envelope("error", body) | {"seq": self.reply_seq()})

    def reply_seq(self) -> int:
        """The `seq` of a reply to the client: the socket's next number."""
        self.seq += 1
        return self.seq


class UnknownPath(AsyncWebsocketConsumer):
    """Every websocket path no consumer serves: refused at the handshake (not a server error)."""

    async def connect(self):
        await self.close(code=CLOSE_NOT_FOUND)


# One member per server process that holds authenticated sockets (its `_CredentialChecks`), not one per socket:
# `recheck_socket_credentials` (a beat task, every 30 s) asks each process to check all of its sockets again.
CREDENTIAL_CHECK_GROUP = "sockets.credentials"


def recheck_socket_credentials() -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(CREDENTIAL_CHECK_GROUP, {"type": "credentials.recheck"})
    except RedisError as exc:  # the sockets close when the layer loses Redis; the next recheck is 30 s away
        log.warning("socket credentials not rechecked: channel layer unavailable (%s)", exc)


class _CredentialChecks:
    """The authenticated sockets open on one event loop (one per server process), and the one task that checks
    them all when `recheck_socket_credentials` asks: each kind of socket checks its sockets together
    (`recheck_all`: the driver sockets in one query), and a revoked socket is told on its own channel, so it
    closes from its own task, between two of its messages. The task runs while the loop holds such a socket."""

    # One per event loop, weakly held as the loops' Redis clients are: none outlives its loop.
    _by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.sockets: weakref.WeakSet[AuthenticatedConsumer] = weakref.WeakSet()
        self.task: asyncio.Task | None = None
        self.ready: asyncio.Future | None = None

    @classmethod
    def of_running_loop(cls) -> "_CredentialChecks":
        loop = asyncio.get_running_loop()
        checks = cls._by_loop.get(loop)
        if checks is None:
            checks = cls._by_loop[loop] = cls()
        return checks

    async def add(self, socket: "AuthenticatedConsumer") -> None:
        """Once this returns, the next recheck reaches the socket."""
        self.sockets.add(socket)
        if self.task is None or self.task.done():
            self.ready = asyncio.get_running_loop().create_future()
            self.task = asyncio.create_task(self._listen(socket.channel_layer, self.ready))
        await asyncio.shield(self.ready)

    def discard(self, socket: "AuthenticatedConsumer") -> None:
        self.sockets.discard(socket)
        if not self.sockets and self.task is not None:
            self.task.cancel()  # its channel and group membership go with it
            self.task = None
            self._by_loop.pop(asyncio.get_running_loop(), None)

    async def _listen(self, layer, ready: asyncio.Future) -> None:
        channel = None
        try:
            channel = await layer.new_channel()
            await layer.group_add(CREDENTIAL_CHECK_GROUP, channel)
        except Exception as exc:
            ready.set_exception(exc)  # the sockets waiting in `add` fail to open, as a failed group_add did
            return
        ready.set_result(None)
        try:
            while True:
                if (await layer.receive(channel))["type"] == LOST["type"]:
                    return  # its sockets close; the next one to open starts a listener on a new subscription
                try:
                    await self._recheck()
                except Exception:
                    log.exception("checking the credentials of open sockets failed")
                # Channel layers forget a group member after a day (group_expiry): joining again keeps a process
                # whose sockets stay open longer within reach of the next check.
                await layer.group_add(CREDENTIAL_CHECK_GROUP, channel)
        finally:
            await layer.group_discard(CREDENTIAL_CHECK_GROUP, channel)

    async def _recheck(self) -> None:
        by_kind: dict[type, list] = {}
        for socket in self.sockets:
            by_kind.setdefault(type(socket), []).append(socket)
        for kind, sockets in by_kind.items():
            for socket in await kind.recheck_all(sockets):
                await socket.channel_layer.send(socket.channel_name, {"type": "credentials.revoked"})


class AuthenticatedConsumer(JsonSocket):
    """A socket that stays open only while the credentials it was opened with are valid: a token that was
    revoked (logout) or expired, a session that ended, a deactivated user, or a user who lost the right to this
    stream closes it at the next recheck. Subclasses say who may hold the socket in `authorized_user`."""

    token_key: str | None = None
    checks: _CredentialChecks | None = None

    async def authorized_user(self, user):
        """The user if they may hold this socket now, else None."""
        return user

    async def current_user(self):
        """The user behind the socket's credentials now, or None: its token if it came with one (apps), else
        its browser session."""
        if self.token_key:
            user = await user_for_token(self.token_key)
        elif "session" in self.scope:
            # Read from the store each time: the scope's session was loaded once, at connect, and would still
            # name the user after a logout (or its expiry) deleted it.
            stored = import_module(settings.SESSION_ENGINE).SessionStore(self.scope["session"].session_key)
            user = await get_user({"session": stored})
            user = user if user.is_authenticated and user.is_active else None
        else:
            user = None
        return await self.authorized_user(user) if user is not None else None

    @classmethod
    async def recheck_all(cls, sockets: list) -> list:
        """The sockets, all of this class, whose credentials are no longer valid. One check per socket here;
        a subclass with many sockets checks them together."""
        return [socket for socket in sockets if await socket.current_user() is None]

    async def authenticate(self):
        """At connect: the authorized user, or None to refuse the socket."""
        self.token_key = token_from_scope(self.scope)
        if self.token_key is not None and NUL in self.token_key:
            return None  # no token holds one, and the database refuses to look one up (core.inputs.NUL)
        return await self.current_user()

    async def accept(self, subprotocol=None, headers=None):
        self.checks = _CredentialChecks.of_running_loop()
        await self.checks.add(self)
        await super().accept(subprotocol, headers)

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.checks is not None:
            self.checks.discard(self)
            self.checks = None

    async def credentials_revoked(self, event):
        await self.close(code=CLOSE_UNAUTHORIZED)


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
