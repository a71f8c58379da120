"""`/ws/ops/`: live escalations (and zone pressure) for staff, by session or token. `/ws/track/<token>/`: a
delivery's tracking link, live, for anyone holding the token."""

from channels.db import database_sync_to_async

from core.errors import DomainError
from core.inputs import NUL
from core.throttling import SocketRequest, tracking_visit
from core.ws import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_THROTTLED, AuthenticatedConsumer, JsonSocket
from deliveries import messages
from deliveries.services.ops_feed import OPS_GROUP
from deliveries.services.tracking import delivery_for_link
from drivers import trail

# What the feed shows is the escalation queue: whoever may view escalations in the console may watch it.
OPS_FEED_PERMISSION = "deliveries.view_escalation"


@database_sync_to_async
def _may_watch(user) -> bool:
    return user.is_staff and user.has_perm(OPS_FEED_PERMISSION)


class OpsConsumer(AuthenticatedConsumer):
    kind = "ops"
    joined = False

    async def authorized_user(self, user):
        return user if await _may_watch(user) else None

    async def connect(self):
        if await self.authenticate() is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(OPS_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.joined:
            await self.channel_layer.group_discard(OPS_GROUP, self.channel_name)

    async def stream_message(self, event):
        self.seq += 1
        await self.send_json(event["message"] | {"seq": self.seq})


@database_sync_to_async
def _delivery_id_for_link(token: str, peer: SocketRequest) -> tuple[object, int | None]:
    """The link's delivery (None: unknown or expired) and, when the address is over the tracking budget (its socket
    opens count as its page loads and polls do), the seconds it has to wait."""
    if (wait := tracking_visit(peer)) is not None:
        return None, wait
    try:
        return delivery_for_link(token).pk, None
    except DomainError:
        return None, None


@database_sync_to_async
def _tracking_state(token: str) -> dict | None:
    try:
        return messages.tracking(delivery_for_link(token))
    except DomainError:
        return None


class TrackConsumer(JsonSocket):
    """Sends the link's state on connect (`status`), then what the delivery's group is told: `status`, `eta` and
    `location`. Messages are built once per delivery (deliveries/services/tracking.py, drivers/trail.py); this
    socket only numbers them and holds back a `location` outside the pickup-to-delivery window (one that raced
    the delivery's last `status`). An unknown or expired token is refused at the handshake, as is an address over
    the tracking budget."""

    kind = "track"
    group = None
    status = ""

    async def connect(self):
        token = self.scope["url_route"]["kwargs"]["token"]
        # No link holds a NUL, and the database refuses to look one up (core.inputs.NUL): refused as unknown.
        delivery_id, wait = (
            (None, None) if NUL in token else await _delivery_id_for_link(token, SocketRequest(self.scope))
        )
        if wait is not None:
            await self.refuse(self.base_send, 429, wait, CLOSE_THROTTLED)
            return
        if delivery_id is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        # Join first, then read: a change committed in between is in the state or arrives after it.
        self.group = trail.tracking_group(delivery_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        state = await _tracking_state(token)
        if state is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        await self.accept()
        await self._deliver(trail.tracking_envelope("status", state))

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        await self.send_error("unknown_type", "This socket only listens; it takes no messages.")

    async def stream_message(self, event):
        await self._deliver(event["message"])

    async def _deliver(self, envelope: dict):
        if envelope["type"] == "status":
            self.status = envelope["data"]["status"]
        elif envelope["type"] == "location" and self.status != "picked_up":
            return
        self.seq += 1
        await self.send_json(envelope | {"seq": self.seq})
