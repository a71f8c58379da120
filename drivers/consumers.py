"""`/ws/driver/?token=<key>`: a driver's own message stream, with `resume` from the stored stream."""

import time

from channels.db import database_sync_to_async
from django.core.exceptions import ObjectDoesNotExist

from core.ws import CLOSE_UNAUTHORIZED, AuthenticatedConsumer
from drivers import locations
from drivers.api import PointInput, points_from
from drivers.ingest import parse_point
from drivers.models import Driver, DriverMessage, DriverState
from drivers.notifications import driver_group

REPLAY_LIMIT = 500
ONLINE_RECHECK_S = 30


@database_sync_to_async
def _driver_of(user) -> Driver | None:
    try:
        return Driver.objects.get(user=user)
    except ObjectDoesNotExist:
        return None


@database_sync_to_async
def _missed(driver_id, after_seq: int) -> list[dict]:
    rows = DriverMessage.objects.filter(driver_id=driver_id, seq__gt=after_seq).order_by("seq")[:REPLAY_LIMIT]
    return [message.envelope() for message in rows]


@database_sync_to_async
def _is_online(driver_id) -> bool:
    return Driver.objects.filter(pk=driver_id).exclude(state=DriverState.OFFLINE).exists()


class DriverConsumer(AuthenticatedConsumer):
    kind = "driver"
    driver: Driver | None = None
    last_seq = 0
    # Whether pings are kept (an offline driver's are dropped): read at connect, kept current by `driver.state`
    # messages and re-read at most every ONLINE_RECHECK_S, so a ping costs no database query (REST state changes
    # show within that time; dispatch checks the live state anyway).
    online = False
    online_read_at = float("-inf")

    async def current_user(self):
        # Drivers' apps authenticate by token only.
        return await super().current_user() if self.token_key else None

    async def connect(self):
        user = await self.authenticate()
        self.driver = await _driver_of(user) if user else None
        if self.driver is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.group = driver_group(self.driver.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await super().disconnect(code)
        if self.driver is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        kind, data = content.get("type"), content.get("data") or {}
        handler = {"location": self.on_location, "resume": self.on_resume}.get(kind)
        if handler is None:
            await self.send_error("unknown_type", f"Unknown message type {kind!r}; expected location or resume.")
        elif not isinstance(data, dict):
            await self.send_error("invalid", f"{kind}: data must be a JSON object.")
        else:
            await handler(data)

    async def on_location(self, data):
        # The lean validator takes the plain form on the event loop; the serializer decides the rest and words
        # the errors.
        point = parse_point(data)
        if point is None:
            serializer = PointInput(data=data)
            if not serializer.is_valid():
                await self.send_error("invalid", "The location is not valid.", fields=serializer.errors)
                return
            point = points_from([serializer.validated_data])[0]
        if time.monotonic() - self.online_read_at > ONLINE_RECHECK_S:
            self.online, self.online_read_at = await _is_online(self.driver.pk), time.monotonic()
        await locations.arecord_positions(self.driver.pk, [point], online=self.online)

    async def on_resume(self, data):
        after = data.get("after_seq")
        if not isinstance(after, int) or after < 0:
            await self.send_error("invalid", "resume needs data.after_seq, a whole number ≥ 0.")
            return
        # Messages are handled one at a time, so pushes that arrive meanwhile wait and are de-duplicated by seq.
        for envelope in await _missed(self.driver.pk, after):
            await self._deliver(envelope)

    async def stream_message(self, event):
        await self._deliver(event["message"])

    async def _deliver(self, envelope: dict):
        if envelope["seq"] <= self.last_seq:
            return
        self.last_seq = envelope["seq"]
        if envelope["type"] == "driver.state":
            self.online, self.online_read_at = envelope["data"]["state"] != DriverState.OFFLINE, time.monotonic()
        await self.send_json(envelope)
